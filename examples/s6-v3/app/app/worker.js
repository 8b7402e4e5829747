// A background worker: counts ticks while it runs and, on SIGTERM, writes a
// line to /config/worker/shutdown.log before it exits 0, saying when, after
// how many ticks, and who its parent was then (1: it had been left running
// by its service's run script and was reached by the container's last
// SIGTERM to every process).
'use strict';
const fs = require('fs');

const log = '/config/worker/shutdown.log';
let ticks = 0;
const timer = setInterval(() => { ticks += 1; }, 1000);

process.on('SIGTERM', () => {
  clearInterval(timer);
  const line = `${Date.now()} clean pid=${process.pid} ppid=${process.ppid} ticks=${ticks}\n`;
  try {
    fs.appendFileSync(log, line);
  } catch (err) {
    console.error(`worker: cannot write ${log}: ${err.message}`);
    process.exit(1);
  }
  // Nothing printed here: the service's output pipe may be gone by now.
  process.exit(0);
});

console.log(`worker: started as uid ${process.getuid()}`);
