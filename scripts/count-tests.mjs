// Reads ava's output (default reporter) and prints, as its last line, "tests: N passed, N failed".
// Usage: node scripts/count-tests.mjs LOGFILE EXIT_STATUS
//
// ava prints its "N tests passed" summary only when nothing failed, so the counts come from
// its per-test lines instead ("✔ title", "✘ [fail]: title"), plus what never reached a
// per-test line: tests left out after a failed hook ("✘ N tests remaining in FILE"), tests
// pending when ava timed out ("N tests were pending in FILE"), and files that crashed
// (uncaught exception, unhandled rejection, non-zero exit, process.exit(), failed to exit),
// each crashed file counting as one failure. A test marked `failing` that fails as expected
// ("✔ [expected fail]") is not a pass: it is counted apart, as "N known to fail".
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

/** Counts of one ava run, from its output. */
export function countTests(output) {
  // eslint-disable-next-line no-control-regex
  const text = output.replace(/\x1b\[[0-9;]*m/g, '');
  const lines = text.split(/\r?\n/);
  let passed = 0;
  let failedTests = 0;
  let notRun = 0;
  let skipped = 0;
  let expectedFailures = 0;
  const crashed = new Set();
  const crash = [
    /^\s*Uncaught exception in (\S+)/,
    /^\s*Unhandled rejection in (\S+)/,
    /^\s*✘ (\S+) exited (?:with a non-zero exit code|due to)/,
    /^\s*✘ Exiting due to process\.exit\(\) when running (\S+)/,
    /^\s*✘ Internal error when running (\S+)/,
    /^\s*✘ No tests found in (\S+)/,
    /^\s*Failed to exit when running (\S+)/,
  ];
  for (const line of lines) {
    let m;
    if (/^\s*✔ \[expected fail\] /.test(line)) expectedFailures++;
    else if (/^\s*✔ (?!\[unexpected pass\])/.test(line)) passed++;
    else if (/^\s*✘ \[(?:fail|unexpected pass)\]: /.test(line)) failedTests++;
    else if ((m = /^\s*✘ (\d+) tests? remaining in /.exec(line))) notRun += Number(m[1]);
    else if ((m = /^\s*(\d+) tests? (?:was|were) pending in /.exec(line))) notRun += Number(m[1]);
    else if (/^\s*- \[skip\] /.test(line)) skipped++;
    for (const re of crash) {
      const c = re.exec(line);
      if (c) crashed.add(c[1]);
    }
  }
  const timedOut = lines.some((l) => /^\s*✘ Timed out while running tests/.test(l));
  return { passed, failed: failedTests + notRun + crashed.size, failedTests, notRun, crashedFiles: [...crashed], skipped, expectedFailures, timedOut };
}

/** The closing line; a non-zero exit with nothing counted as failed is still one failure. */
export function summaryLine(counts, status) {
  const failed = String(status) !== '0' && counts.failed === 0 ? 1 : counts.failed;
  const extra = [counts.skipped ? `${counts.skipped} skipped` : '', counts.expectedFailures ? `${counts.expectedFailures} known to fail` : ''].filter(Boolean);
  return `tests: ${counts.passed} passed, ${failed} failed${extra.map((e) => `, ${e}`).join('')}`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [file, status = '0'] = process.argv.slice(2);
  const counts = countTests(readFileSync(file, 'utf8'));
  const parts = [];
  if (counts.failedTests) parts.push(`${counts.failedTests} failed`);
  if (counts.notRun) parts.push(`${counts.notRun} not run (after a failed hook or a timeout)`);
  if (counts.crashedFiles.length) parts.push(`${counts.crashedFiles.length} file(s) crashed: ${counts.crashedFiles.join(', ')}`);
  if (counts.timedOut) parts.push('ava timed out');
  if (String(status) !== '0' && counts.failed === 0) parts.push(`ava exited ${status} with no failure in its output`);
  if (parts.length > 0) console.log(`failures: ${parts.join('; ')}`);
  console.log(summaryLine(counts, status));
}
