/** JSON parameters: valid text parses as JSON.parse does; invalid text names line, column and position. */
import test from 'ava';
import { CliError, ExitCode } from '../../../cli/exit-codes.js';
import { checkBodySize, locateJsonError, parseJsonParameters } from '../../../cli/json-input.js';

test('valid JSON of every kind parses as JSON.parse does, and the scanner agrees it is valid', (t) => {
  for (const text of ['{}', '[]', '"hi"', '42', '-0.5e+3', 'true', 'null', ' {"a": [1, {"b": "\\u00e9\\n"}], "c": false} ']) {
    t.deepEqual(parseJsonParameters(text, 'command line'), JSON.parse(text), text);
    t.is(locateJsonError(text), undefined, text);
  }
});

const cases: Array<[string, number, number, number, RegExp]> = [
  // text, position, line, column, reason
  ['{"a":1,}', 7, 1, 8, /trailing comma/],
  ['{"a" 1}', 5, 1, 6, /expected ":"/],
  ['{"a": tru}', 6 + 3, 1, 10, /"true"/],
  ["{'a': 1}", 1, 1, 2, /property name/],
  ['[1, 2', 5, 1, 6, /end of input/],
  ['{"a": 1}}', 8, 1, 9, /after the JSON value/],
  ['', 0, 1, 1, /empty input/],
  ['{\n  "a": 1,\n  "b": [1,, 2]\n}', 22, 3, 11, /JSON value was expected/],
  ['"unterminated', 13, 1, 14, /unterminated string/],
  ['01', 1, 1, 2, /after the JSON value/],
];

for (const [text, position, line, column, reason] of cases) {
  test(`locates the error in ${JSON.stringify(text)}`, (t) => {
    const issue = locateJsonError(text);
    t.truthy(issue);
    t.like(issue, { position, line, column });
    t.regex(issue?.reason ?? '', reason);
    t.throws(() => JSON.parse(text), undefined, 'the case must be invalid for JSON.parse too');
  });
}

test('an invalid parameter is a usage error (exit 2) naming source, line, column and position, with a caret', (t) => {
  const err = t.throws(() => parseJsonParameters('{\n "x": [1,]\n}', 'file p.json'), { instanceOf: CliError });
  t.is(err?.exitCode, ExitCode.USAGE);
  t.regex(err?.message ?? '', /^invalid JSON parameters \(file p\.json\) at line 2, column 10 \(position 11\): trailing comma before "\]"/);
  t.true(err?.message.includes('\n   "x": [1,]\n           ^'));
});

test('an unquoted string gets a hint to quote it', (t) => {
  const err = t.throws(() => parseJsonParameters('hello', 'command line'), { instanceOf: CliError });
  t.regex(err?.message ?? '', /needs JSON quotes, e.g. '"hello"'/);
});

test('parameters whose body would pass the receivers\' 1 MiB limit are a usage error naming the limit', (t) => {
  t.notThrows(() => checkBodySize('echo', { text: 'x'.repeat(1000) }));
  const err = t.throws(() => checkBodySize('echo', { text: 'x'.repeat(1024 * 1024) }), { instanceOf: CliError });
  t.is(err?.exitCode, ExitCode.USAGE);
  t.regex(err?.message ?? '', /1048576-byte limit \(1 MiB\)/);
});
