import test from 'ava';
import { parseJsonc } from '../../../daemon/jsonc.js';

test('comments go, strings stay', (t) => {
  t.deepEqual(parseJsonc('// head\n{ "a": "x // not a comment", /* c */ "b": "/* nor this */", "c": "q\\"//" } // tail'), {
    a: 'x // not a comment',
    b: '/* nor this */',
    c: 'q"//',
  });
});

test('errors keep their position', (t) => {
  const err = t.throws(() => parseJsonc('/* c */ { "a": }'));
  t.regex(err?.message ?? '', /position 15|column 16|Unexpected token/);
});
