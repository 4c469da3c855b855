// Config files are JSON with comments: strip-json-comments blanks comments (keeping offsets), JSON.parse reads the rest.
import test from 'ava';
import stripJsonComments from 'strip-json-comments';

const parse = (text: string): unknown => JSON.parse(stripJsonComments(text));

test('comments go, strings stay', (t) => {
  t.deepEqual(parse('// head\n{ "a": "x // not a comment", /* c */ "b": "/* nor this */", "c": "q\\"//" } // tail'), {
    a: 'x // not a comment',
    b: '/* nor this */',
    c: 'q"//',
  });
});

test('errors keep their position', (t) => {
  const err = t.throws(() => parse('/* c */ { "a": }'));
  t.regex(err?.message ?? '', /position 15|column 16|Unexpected token/);
});
