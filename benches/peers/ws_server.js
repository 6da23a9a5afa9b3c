// Peer: a plain Node.js `ws` server, the straightforward way a team would hand-roll a feed:
// a set of sockets per symbol, `ws.send` of the same JSON string to each.
'use strict';
const http = require('http');
const { WebSocketServer } = require('ws');
const { makeSim, argsFromEnv } = require('./sim');

const args = argsFromEnv();
const sim = makeSim(args);
const bySymbol = new Map(sim.names.map((n) => [n, new Set()]));
const everything = new Set();

const server = http.createServer((req, res) => {
  if (req.url.startsWith('/symbols')) {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(sim.sorted));
  } else {
    res.statusCode = 404;
    res.end();
  }
});
const wss = new WebSocketServer({ server, path: '/ws', perMessageDeflate: false });
wss.on('connection', (ws, req) => {
  const wanted = (new URL(req.url, 'http://peer').searchParams.get('symbols') || '').split(',');
  const joined = [];
  for (const s of wanted) {
    const set = s === '*' ? everything : bySymbol.get(s);
    if (set) { set.add(ws); joined.push(set); }
  }
  ws.on('close', () => joined.forEach((set) => set.delete(ws)));
  ws.on('error', () => {});
  ws.send(JSON.stringify({ type: 'welcome', server: 'node-ws' }));
});
sim.start((symbol, json) => {
  for (const ws of bySymbol.get(symbol)) ws.send(json);
  for (const ws of everything) ws.send(json);
});
// Node's default accept backlog (511) overflows while the fan-out tool ramps up 2,000
// connections/s and the loop is busy broadcasting: SYNs are dropped and retried after 1-3 s.
server.listen({ port: args.port, host: '127.0.0.1', backlog: 4096 }, () => console.log(`node-ws listening on ${args.port}`));
