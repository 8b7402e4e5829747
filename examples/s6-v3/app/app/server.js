// The app: an HTTP server that answers GET / with what it knows of itself as
// one JSON line: its pid and uid, the boot number and the fingerprint of the
// secret it was given through the container environment (never the secret).
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const http = require('http');

const port = Number(process.env.APP_PORT || 8080);
const pidFile = '/run/app/app.pid';

function fingerprint(value) {
  if (value === undefined) return null;
  return crypto.createHash('sha256').update(value).digest('hex');
}

const about = () => ({
  pid: process.pid,
  uid: process.getuid(),
  gid: process.getgid(),
  boot: process.env.BOOT_COUNT || null,
  started_at: process.env.APP_STARTED_AT || null,
  secret_sha256: fingerprint(process.env.APP_SECRET),
});

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(about()) + '\n');
});

server.listen(port, () => {
  try {
    fs.writeFileSync(pidFile, `${process.pid}\n`);
  } catch (err) {
    console.error(`app: cannot write ${pidFile}: ${err.message}`);
  }
  console.log(`app: listening on port ${port} as uid ${process.getuid()}`);
});
