'use strict';
// A web node of the example: answers every request with its name.
// Node's built-in modules only (no npm).
//
//   node server.js [--notify-fd N]
//
// PORT (8080) is where it listens. GET /healthz is its health (200).
// --notify-fd N: write a newline to fd N once listening, s6's readiness
// protocol (notification-fd).
//
// On SIGTERM it stops at once, cleanly: it closes its listener, answers the
// requests in flight, and exits. It need not guess when the load balancer
// has stopped sending it requests: by then it has. The web service's
// `pre-stop` hook (leave-haproxy) runs before corral sends SIGTERM, and ends
// once haproxy no longer lists this node.

const http = require('http');
const fs = require('fs');
const os = require('os');

const port = Number(process.env.PORT || 8080);
const name = process.env.NODE_NAME || os.hostname();

const fdArg = process.argv.indexOf('--notify-fd');
const notifyFd = fdArg > 0 ? Number(process.argv[fdArg + 1]) : null;

let served = 0;
let lastRequestAt = null;
let termAt = null;
let servedSinceTerm = 0;

const server = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok\n');
    return;
  }
  served += 1;
  lastRequestAt = Date.now();
  const headers = { 'content-type': 'text/plain', 'x-served-by': name };
  if (termAt !== null) {
    servedSinceTerm += 1;
    // Closing: this connection is not kept for another request.
    headers.connection = 'close';
  }
  res.writeHead(200, headers);
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
  if (termAt !== null) return;
  termAt = Date.now();
  const last = lastRequestAt === null ? '' : ` (the last one ${termAt - lastRequestAt} ms before)`;
  console.log(`SIGTERM: closing; served ${served} requests${last}`);
  // No new connection; idle keep-alive ones closed now, busy ones once
  // their response is sent; then 'close'.
  server.close(() => {
    console.log(`closed after ${Date.now() - termAt} ms; ${servedSinceTerm} requests served after SIGTERM`);
    process.exit(0);
  });
  server.closeIdleConnections();
});
