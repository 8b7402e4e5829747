'use strict';
// A web node of the example: answers every request with its name.
// Node's built-in modules only (no npm).
//
//   node server.js [--notify-fd N]
//
// PORT (8080) is where it listens. GET /healthz is its health (200, or 503
// while draining). --notify-fd N: write a newline to fd N once listening,
// s6's readiness protocol (notification-fd).
//
// On SIGTERM it drains rather than stopping at once: it keeps serving, and
// stops listening once no request has come for DRAIN_IDLE_MS (the load
// balancer has taken it out of rotation), or after DRAIN_MAX_MS at most; it
// exits when the requests in flight are answered.

const http = require('http');
const fs = require('fs');
const os = require('os');

const port = Number(process.env.PORT || 8080);
const name = process.env.NODE_NAME || os.hostname();
const drainIdleMs = Number(process.env.DRAIN_IDLE_MS || 500);
const drainMaxMs = Number(process.env.DRAIN_MAX_MS || 4000);

const fdArg = process.argv.indexOf('--notify-fd');
const notifyFd = fdArg > 0 ? Number(process.argv[fdArg + 1]) : null;

let draining = false;
let lastRequestAt = Date.now();
let served = 0;

const server = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(draining ? 503 : 200, { 'content-type': 'text/plain' });
    res.end(draining ? 'draining\n' : 'ok\n');
    return;
  }
  lastRequestAt = Date.now();
  served += 1;
  res.writeHead(200, { 'content-type': 'text/plain', 'x-served-by': name });
  res.end(`${name}\n`);
});

server.listen(port, () => {
  console.log(`${name} listening on :${port}`);
  if (notifyFd !== null && Number.isInteger(notifyFd)) {
    fs.writeSync(notifyFd, '\n');
    fs.closeSync(notifyFd);
  }
});

process.on('SIGTERM', () => {
  if (draining) return;
  draining = true;
  const since = Date.now();
  console.log(`draining: served ${served} so far`);
  const tick = setInterval(() => {
    const now = Date.now();
    const idle = now - lastRequestAt >= drainIdleMs;
    if (!idle && now - since < drainMaxMs) return;
    clearInterval(tick);
    console.log(`stopping after ${now - since} ms of draining (${idle ? 'no more requests' : 'drain limit'}); served ${served}`);
    server.close(() => process.exit(0));
    server.closeIdleConnections();
  }, 50);
});
