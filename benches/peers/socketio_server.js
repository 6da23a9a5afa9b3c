// Peer: Socket.IO 4 with one room per symbol (plus `*`), WebSocket transport only.
// Broadcasting to rooms encodes each tick once per emit.
'use strict';
const http = require('http');
const { Server } = require('socket.io');
const { makeSim, argsFromEnv } = require('./sim');

const args = argsFromEnv();
const sim = makeSim(args);
const server = http.createServer((req, res) => {
  if (req.url.startsWith('/symbols')) {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(sim.sorted));
  } else if (!req.url.startsWith('/socket.io')) {
    res.statusCode = 404;
    res.end();
  }
});
const io = new Server(server, { transports: ['websocket'], perMessageDeflate: false, serveClient: false });
io.on('connection', (socket) => {
  for (const s of String(socket.handshake.query.symbols || '').split(',')) if (s) socket.join(s);
});
sim.start((symbol, json) => io.to([symbol, '*']).emit('tick', JSON.parse(json)));
// Node's default accept backlog (511) overflows while the fan-out tool ramps up 2,000
// connections/s and the loop is busy broadcasting: SYNs are dropped and retried after 1-3 s.
server.listen({ port: args.port, host: '127.0.0.1', backlog: 4096 }, () => console.log(`socket.io listening on ${args.port}`));
