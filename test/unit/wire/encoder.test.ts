import test from 'ava';
import { JsonEncoder, PostageError } from 'postage';

const enc = new JsonEncoder({ maxBytes: 1000, maxDepth: 5 });

test('round-trips JSON', (t) => {
  t.deepEqual(enc.decode(enc.encode({ a: [1, 'x', { b: null }] })), { a: [1, 'x', { b: null }] });
  t.is(enc.contentType, 'application/json');
});

test('refuses bodies over the size limit before parsing', (t) => {
  const err = t.throws(() => enc.decode(Buffer.alloc(1001, 0x20)));
  t.is((err as PostageError).code, 'POSTAGE_ERR_BODY_TOO_LARGE');
});

test('refuses nesting deeper than the limit by a byte scan (no RangeError at a million levels)', (t) => {
  t.notThrows(() => enc.decode(Buffer.from('[[[[[1]]]]]')));
  t.is((t.throws(() => enc.decode(Buffer.from('[[[[[[1]]]]]]'))) as PostageError).code, 'POSTAGE_ERR_TOO_DEEP');
  const big = new JsonEncoder({ maxBytes: 4_000_000 });
  const deep = Buffer.from('['.repeat(1_000_000) + ']'.repeat(1_000_000));
  t.is((t.throws(() => big.decode(deep)) as PostageError).code, 'POSTAGE_ERR_TOO_DEEP');
});

test('a body too short to nest past the limit as valid JSON still reports its depth first when it is invalid', (t) => {
  const e = new JsonEncoder(); // maxDepth 128: bodies under 258 bytes skip the scan unless they fail
  t.is((t.throws(() => e.decode(Buffer.from('['.repeat(200)))) as PostageError).code, 'POSTAGE_ERR_TOO_DEEP');
  t.is((t.throws(() => e.decode(Buffer.concat([Buffer.from('['.repeat(200)), Buffer.from([0xff])]))) as PostageError).code, 'POSTAGE_ERR_TOO_DEEP');
  t.is((t.throws(() => e.decode(Buffer.from('['.repeat(100)))) as PostageError).code, 'POSTAGE_ERR_DECODE');
  t.is((t.throws(() => enc.decode(Buffer.from('[[[[[[]]]]]]'))) as PostageError).code, 'POSTAGE_ERR_TOO_DEEP');
});

test('a UTF-8 byte order mark before the body is dropped; invalid UTF-8 names its cause', (t) => {
  t.deepEqual(enc.decode(Buffer.from('\ufeff{"a":1}')), { a: 1 });
  const err = t.throws(() => enc.decode(Buffer.from([0x7b, 0x22, 0xc3, 0x22, 0x7d]))) as PostageError;
  t.is(err.code, 'POSTAGE_ERR_DECODE');
  t.is(err.message, 'body is not valid UTF-8');
  t.true(err.cause instanceof TypeError);
});

test('brackets inside strings do not count as depth', (t) => {
  t.deepEqual(enc.decode(Buffer.from('{"a":"[[[[[[[[[[\\"{{{{{{{"}')), { a: '[[[[[[[[[["{{{{{{{' });
});

test('invalid UTF-8 and invalid JSON are decode errors', (t) => {
  t.is((t.throws(() => enc.decode(Buffer.from([0x7b, 0xff, 0x7d]))) as PostageError).code, 'POSTAGE_ERR_DECODE');
  t.is((t.throws(() => enc.decode(Buffer.from('{nope'))) as PostageError).code, 'POSTAGE_ERR_DECODE');
});

test('__proto__ keys stay plain data', (t) => {
  const v = enc.decode(Buffer.from('{"__proto__": {"polluted": 1}}')) as Record<string, unknown>;
  t.is(Object.getPrototypeOf(v), Object.prototype);
  t.is(({} as Record<string, unknown>)['polluted'], undefined);
  t.is(structuredClone(v)['polluted'], undefined);
});

test("Python's NaN, Infinity and -Infinity are read, and written back as Python writes them", (t) => {
  const e = new JsonEncoder();
  const body = e.decode(Buffer.from('{"a": NaN, "b": [Infinity, -Infinity, 1.5], "s": "NaN, Infinity stay text", "t": "\\u00e9"}')) as Record<string, unknown>;
  t.true(Number.isNaN(body['a']));
  t.deepEqual(body['b'], [Infinity, -Infinity, 1.5]);
  t.is(body['s'], 'NaN, Infinity stay text');
  t.is(body['t'], 'é');
  t.is(e.encode({ a: NaN, b: [Infinity, -Infinity], s: 'NaN', z: 'x\u0000y' }).toString(), '{"a":NaN,"b":[Infinity,-Infinity],"s":"NaN","z":"x\\u0000y"}');
  t.is(e.encode({ plain: 1 }).toString(), '{"plain":1}');
});

test('an invalid body with NaN in it reports the body\'s own error', (t) => {
  const err = t.throws(() => new JsonEncoder().decode(Buffer.from('{"a": NaNx}')));
  t.is((err as { code?: string }).code, 'POSTAGE_ERR_DECODE');
  t.regex(err?.message ?? '', /"\{"a": NaNx\}" is not valid JSON/);
});

test('bigint: integers beyond 2^53 are read and written exactly; safe ones stay numbers', (t) => {
  const e = new JsonEncoder({ bigint: true });
  const text = '{"big":12345678901234567890,"neg":-98765432109876543210,"edge":9007199254740993,"safe":9007199254740991,"f":1.5e300,"s":"12345678901234567890"}';
  const body = e.decode(Buffer.from(text)) as Record<string, unknown>;
  t.is(body['big'], 12345678901234567890n);
  t.is(body['neg'], -98765432109876543210n);
  t.is(body['edge'], 9007199254740993n);
  t.is(body['safe'], 9007199254740991);
  t.is(body['f'], 1.5e300);
  t.is(body['s'], '12345678901234567890');
  t.is(e.encode(body).toString(), text.replace('1.5e300', '1.5e+300'));
  t.is(new JsonEncoder().encode({ n: 2n ** 64n }).toString(), '{"n":18446744073709551616}', 'a bigint is written exactly by any encoder');
  t.not((new JsonEncoder().decode(Buffer.from('{"n":12345678901234567890}')) as { n: number }).n.toString(), '12345678901234567890', 'without the option, a double (rounded)');
});
