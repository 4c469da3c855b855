/** Signed control commands: what is accepted and what is refused, and why (lib/wire/signature.ts). */
import test from 'ava';
import { MessageCommand } from 'postage';
import { NonceStore, canonicalJson, isControl, signBody, verifyBody } from 'postage/internal';

const fresh = (name = 'restart', parameters: unknown = {}) => new MessageCommand(name, parameters).body;
const verify = (body: ReturnType<typeof fresh>, key: string, secrets: string[], store = new NonceStore(60_000), now?: number) =>
  verifyBody(body, key, { secrets, maxAgeMs: 60_000, remember: (nonce, ts) => store.remember('app', nonce, ts), ...(now === undefined ? {} : { now }) });

test('control commands are quit, restart, join_group and leave_group', (t) => {
  t.true(isControl(fresh('quit')));
  t.true(isControl(fresh('join_group')));
  t.false(isControl(fresh('echo')));
  t.false(isControl({ type: 'status', name: 'restart' }));
});

test('a signed command is accepted once; the same copy again is a replay', (t) => {
  const body = fresh();
  signBody(body, 'N', ['s3cret']);
  const store = new NonceStore(60_000);
  t.is(verify(body, 'N', ['s3cret'], store), undefined);
  t.is(verify(body, 'N', ['s3cret'], store), 'replayed');
});

test('refused: unsigned, another secret, another key, changed content, too old, too far ahead', (t) => {
  t.is(verify(fresh(), 'N', ['s3cret']), 'unsigned');
  const body = fresh('join_group', { group_name: 'blue' });
  signBody(body, 'N', ['other']);
  t.is(verify(body, 'N', ['s3cret']), 'bad-signature');
  signBody(body, 'N', ['s3cret']);
  t.is(verify(body, '@H', ['s3cret']), 'bad-signature', 'signed for N, sent to @H');
  const changed = structuredClone(body);
  (changed.content['parameters'] as { group_name: string }).group_name = 'red';
  t.is(verify(changed, 'N', ['s3cret']), 'bad-signature');
  const old = fresh();
  signBody(old, 'N', ['s3cret'], Date.now() - 120_000);
  t.is(verify(old, 'N', ['s3cret']), 'stale');
  const ahead = fresh();
  signBody(ahead, 'N', ['s3cret'], Date.now() + 120_000);
  t.is(verify(ahead, 'N', ['s3cret']), 'stale');
  const garbage = fresh();
  garbage._reserved['signature'] = { v: 1, ts: Date.now(), nonce: 'x' };
  t.is(verify(garbage, 'N', ['s3cret']), 'bad-signature');
});

test('rotation: every configured secret verifies, the first signs', (t) => {
  const byOld = fresh();
  signBody(byOld, 'N', ['old']);
  t.is(verify(byOld, 'N', ['new', 'old']), undefined);
  const byNew = fresh();
  signBody(byNew, 'N', ['new', 'old']);
  t.is(verify(byNew, 'N', ['old']), 'bad-signature', 'signed with the first secret');
});

test('canonical JSON: key order does not change what is signed', (t) => {
  t.is(canonicalJson({ b: 1, a: [{ d: 2, c: 3 }] }), canonicalJson({ a: [{ c: 3, d: 2 }], b: 1 }));
  const a = fresh('restart', { x: 1, y: 2 });
  signBody(a, 'N', ['k']);
  const b = structuredClone(a);
  b.content['parameters'] = { y: 2, x: 1 };
  t.is(verify(b, 'N', ['k']), undefined);
});

test('the nonce store forgets what is too old to be accepted anyway, and carries across an export', (t) => {
  const store = new NonceStore(1000);
  t.true(store.remember('a', 'n1', 0, 100));
  t.false(store.remember('a', 'n1', 0, 200));
  t.true(store.remember('b', 'n1', 0, 200), 'per receiver: each application gets its own copy of a fan-out');
  const next = new NonceStore(1000);
  next.import(store.export(300));
  t.false(next.remember('a', 'n1', 0, 400));
  t.true(next.remember('a', 'n1', 0, 5000), 'forgotten after maxAge');
});
