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
