// Peer: uWebSockets.js with its built-in pub/sub (one topic per symbol). The official
// package is not on npm; the npm package `uwebsockets` republishes its native binaries.
'use strict';
const uWS = require('uwebsockets');
const { makeSim, argsFromEnv } = require('./sim');

const args = argsFromEnv();
const sim = makeSim(args);
const app = uWS.App();
app.get('/symbols', (res) => {
  res.writeHeader('content-type', 'application/json').end(JSON.stringify(sim.sorted));
});
app.ws('/ws', {
  compression: uWS.DISABLED,
  maxBackpressure: 1024 * 1024,
  idleTimeout: 0,
  upgrade: (res, req, context) => {
    res.upgrade(
      { symbols: decodeURIComponent(req.getQuery('symbols') || '') },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  },
  open: (ws) => {
    for (const s of ws.getUserData().symbols.split(',')) {
      if (s === '*') sim.names.forEach((n) => ws.subscribe(n));
      else if (s) ws.subscribe(s);
    }
    ws.send(JSON.stringify({ type: 'welcome', server: 'uwebsockets' }));
  },
});
sim.start((symbol, json) => app.publish(symbol, json, false));
app.listen('127.0.0.1', args.port, (token) => {
  if (!token) { console.error(`cannot listen on ${args.port}`); process.exit(1); }
  console.log(`uwebsockets listening on ${args.port}`);
});
