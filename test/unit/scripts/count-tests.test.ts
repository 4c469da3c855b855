/** scripts/count-tests.mjs: the closing line of .ci/run must be true whatever ava printed. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
// @ts-expect-error: a plain .mjs script without type declarations
import { countTests, summaryLine } from '../../../scripts/count-tests.mjs';

const fixtures = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../fixtures/ava-output');
const read = (name: string): string => readFileSync(path.join(fixtures, name), 'utf8');

test('a green run: per-test lines counted, the summary agrees', (t) => {
  const counts = countTests(read('green.txt'));
  t.like(counts, { passed: 3, failed: 0 });
  t.is(summaryLine(counts, 0), 'tests: 3 passed, 0 failed');
});

test('a run with failures (ava prints no "passed" summary): every kind of failure is counted', (t) => {
  // failures.txt is real ava 7 output of five files: a failed assertion, a known failure, a
  // skip and a todo (a); an uncaught exception from a timer (b); a failed before hook (c);
  // a test that never ends, so ava times out (d); an unhandled rejection (e).
  const counts = countTests(read('failures.txt'));
  t.is(counts.passed, 6, 'six passes');
  t.is(counts.expectedFailures, 1, 'a test marked failing that failed is not a pass');
  t.is(counts.failedTests, 2, 'the failed assertion and the failed hook');
  t.is(counts.notRun, 7, '2 remaining after the hook, 5 pending at the timeout');
  t.deepEqual(counts.crashedFiles.sort(), ['test/b.test.mjs', 'test/e.test.mjs']);
  t.true(counts.timedOut);
  t.is(summaryLine(counts, 1), 'tests: 6 passed, 11 failed, 1 skipped, 1 known to fail');
});

test('a crash that printed nothing countable is still one failure', (t) => {
  const counts = countTests('  ✔ a › one\n  ✔ a › two\n');
  t.is(summaryLine(counts, 1), 'tests: 2 passed, 1 failed');
  t.is(summaryLine(counts, 0), 'tests: 2 passed, 0 failed');
});

test('colours are ignored and two ava runs in one log add up', (t) => {
  const first = '\u001b[32m✔\u001b[39m unit › a\n  ✘ [fail]: unit › b \u001b[3mboom\u001b[23m\n\n  1 test failed\n';
  const second = '  ✔ serial › c\n  ✔ serial › d\n\n  2 tests passed\n';
  t.like(countTests(first + second), { passed: 3, failed: 1 });
});
