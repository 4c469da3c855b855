// Reads ava's output and prints "tests: N passed, N failed" (ava has no such line itself).
// Usage: node scripts/count-tests.mjs LOGFILE EXIT_STATUS
import { readFileSync } from 'node:fs';

const [file, status = '0'] = process.argv.slice(2);
// eslint-disable-next-line no-control-regex
const text = readFileSync(file, 'utf8').replace(/\x1b\[[0-9;]*m/g, '');
const count = (re) => {
  const m = text.match(re);
  return m ? Number(m[1]) : 0;
};
const passed = count(/^\s*(\d+) tests? passed/m);
let failed = count(/^\s*(\d+) tests? failed/m) + count(/^\s*(\d+) uncaught exceptions?/m) + count(/^\s*(\d+) unhandled rejections?/m);
const skipped = count(/^\s*(\d+) tests? skipped/m);
// A non-zero exit with nothing counted as failed (a crash, a timeout) is still a failure.
if (status !== '0' && failed === 0) failed = 1;
console.log(`tests: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
