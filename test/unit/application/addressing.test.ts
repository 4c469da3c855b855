/**
 * The addressing model's names and flags (docs/addressing.md): the queue flags of each kind in
 * each topology mode, the routing-key grammar, and a queue read back from its name.
 */
import test from 'ava';
import { addressesOf, parseKey } from 'postage';
import { queueFlags, queueRole, reachesWholeProcess } from 'postage/internal';

test('durable mode: shared and own queues are durable, expiring and dead-lettered; quorum makes every one of them a quorum queue', (t) => {
  const shared = queueFlags('shared', 'echo');
  const own = queueFlags('unique', 'echo');
  t.like(shared, { durable: true, autoDelete: false, exclusive: false, arguments: { 'x-expires': 7 * 24 * 3600 * 1000, 'x-dead-letter-exchange': 'postage.dead-letter', 'x-dead-letter-routing-key': 'echo' } });
  t.like(own, { durable: true, arguments: { 'x-expires': 60_000 } });
  t.is(shared?.arguments?.['x-queue-type'], undefined);
  t.is(own?.arguments?.['x-queue-type'], undefined);

  // An instance's own queue must survive the loss of its node on a cluster, as the shared ones do.
  for (const kind of ['shared', 'group', 'unique'] as const) {
    t.is(queueFlags(kind, 'echo', { quorum: true })?.arguments?.['x-queue-type'], 'quorum', `${kind} is quorum`);
  }
  t.like(queueFlags('unique', 'echo', { quorum: true, uniqueQueueExpires: 5000 }), { arguments: { 'x-expires': 5000 } });
  // The dead-letter queue is declared with the others at every (re)connection: on a cluster a
  // classic one is refused while its home node is down, and the application consumes nothing.
  t.deepEqual(queueFlags('dead-letter', 'echo'), { durable: true });
  t.deepEqual(queueFlags('dead-letter', 'echo', { quorum: true }), { durable: true, arguments: { 'x-queue-type': 'quorum' } });
});

test("postage mode: Python Postage 1.2.1's flags (auto-delete; the group queue without flags), quorum or not", (t) => {
  for (const quorum of [false, true]) {
    t.deepEqual(queueFlags('shared', 'echo', { mode: 'postage', quorum }), { auto_delete: true });
    t.deepEqual(queueFlags('unique', 'echo', { mode: 'postage', quorum }), { auto_delete: true });
    t.is(queueFlags('group', 'echo', { mode: 'postage', quorum }), undefined);
    t.deepEqual(queueFlags('dead-letter', 'echo', { mode: 'postage', quorum }), { durable: true });
  }
  t.throws(() => queueFlags('shared', 'echo', { mode: 'other' as 'postage' }), { message: /topology\.mode.*"other"|"other".*topology\.mode/ });
});

test('a queue read from its name gets the flags its mode gives it (what postage topology compares)', (t) => {
  t.like(queueRole('echo:42@web-1', { quorum: true }), { kind: 'unique', app: 'echo', flags: { arguments: { 'x-queue-type': 'quorum' } } });
  t.like(queueRole('echo@web-1'), { kind: 'shared', app: 'echo' });
  t.like(queueRole('echo#blue'), { kind: 'group', app: 'echo' });
  t.like(queueRole('postage.dead-letter.echo'), { kind: 'dead-letter', app: 'echo', flags: { durable: true } });
  t.like(queueRole('postage.dead-letter.echo', { quorum: true }), { flags: { arguments: { 'x-queue-type': 'quorum' } } });
  t.like(queueRole('42@web-1', { mode: 'postage' }), { kind: 'unique', flags: { auto_delete: true } });
  t.is(queueRole('42@web-1'), undefined, 'P@H is only a key in durable mode');
  t.is(queueRole('echo/rr'), undefined, 'a key, not a queue');
});

test('every key form parses, with what it reaches; a name with a forbidden character or too long a key is none', (t) => {
  const a = addressesOf({ name: 'echo', host: 'web-1', pid: 42 });
  t.deepEqual(a.fanoutKeys, ['echo', '@web-1', 'echo@web-1', '42@web-1', 'echo:42@web-1']);
  const forms: Array<[string, string, 'fanout' | 'single']> = [
    ['echo', 'N', 'fanout'],
    ['echo/rr', 'N/rr', 'single'],
    ['@web-1', '@H', 'fanout'],
    ['echo@web-1', 'N@H', 'fanout'],
    ['echo@web-1/rr', 'N@H/rr', 'single'],
    ['42@web-1', 'P@H', 'fanout'],
    ['echo:42@web-1', 'N:P@H', 'single'],
    ['echo#blue', 'N#G', 'fanout'],
    ['echo#blue/rr', 'N#G/rr', 'single'],
    ['#daemons', 'daemons', 'fanout'],
  ];
  for (const [key, form, reach] of forms) t.like(parseKey(key), { form, reach }, key);
  t.like(parseKey('echo:42@web-1'), { name: 'echo', pid: '42', host: 'web-1' });
  for (const bad of ['', 'a b', 'echo@', 'echo/rr/rr', 'x'.repeat(256)]) t.is(parseKey(bad), undefined, JSON.stringify(bad.slice(0, 20)));
  t.true(reachesWholeProcess('42@web-1'));
  t.true(reachesWholeProcess('@web-1'));
  t.false(reachesWholeProcess('echo@web-1'));
});
