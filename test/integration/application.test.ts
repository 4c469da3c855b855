import type { ExecutionContext } from 'ava';
import amqp from 'amqplib';
import {
  DEAD_LETTER_EXCHANGE,
  GenericApplication,
  MessageHandler,
  MessageResult,
  deadLetterQueue,
  type ApplicationOptions,
  type Connection,
  type FingerprintDict,
} from 'postage';
import { brokerTest as test, freshVhost, listBindings, listQueues, queueExists, urlFor } from '../helpers/broker.js';
import { Recorder, appProducer, startProcessor } from '../helpers/apps.js';
import { sleep, waitFor } from '../helpers/wait-for.js';

const EX = 'generic-application-exchange';

async function app(t: ExecutionContext, connection: Connection, options: ApplicationOptions): Promise<Recorder> {
  return startProcessor(t, new Recorder({ connection, ...options }));
}

test('durable topology as the broker sees it: exchange, queue flags and arguments, every binding', async (t) => {
  const { vhost, connection } = await freshVhost(t);
  await app(t, connection, { name: 'N', host: 'H1', pid: 11, groups: ['G'] });
  const queues = Object.fromEntries((await listQueues(vhost)).map((q) => [q.name, q]));
  const shared = { durable: true, auto_delete: false, exclusive: false };
  t.like(queues['N'], { ...shared, arguments: { 'x-expires': 7 * 24 * 3600 * 1000, 'x-dead-letter-exchange': DEAD_LETTER_EXCHANGE, 'x-dead-letter-routing-key': 'N' } });
  t.like(queues['N@H1'], { ...shared, arguments: { 'x-expires': 7 * 24 * 3600 * 1000 } });
  t.like(queues['N#G'], { ...shared, arguments: { 'x-expires': 7 * 24 * 3600 * 1000 } });
  t.like(queues['N:11@H1'], { ...shared, arguments: { 'x-expires': 60000, 'x-dead-letter-exchange': DEAD_LETTER_EXCHANGE } });
  t.like(queues[deadLetterQueue('N')], { durable: true, auto_delete: false });
  const bindings = (await listBindings(vhost)).filter((b) => b.source === EX).map((b) => `${b.destination} <- ${b.key}`).sort();
  t.deepEqual(bindings, ['N <- N/rr', 'N#G <- N#G/rr', 'N:11@H1 <- 11@H1', 'N:11@H1 <- @H1', 'N:11@H1 <- N', 'N:11@H1 <- N#G', 'N:11@H1 <- N:11@H1', 'N:11@H1 <- N@H1', 'N@H1 <- N@H1/rr'].sort());
  const dl = (await listBindings(vhost)).filter((b) => b.source === DEAD_LETTER_EXCHANGE);
  t.deepEqual(dl, [{ source: DEAD_LETTER_EXCHANGE, destination: deadLetterQueue('N'), key: 'N' }]);
  const raw = await amqp.connect(urlFor(vhost));
  t.teardown(() => raw.close());
  const ch = await raw.createChannel();
  await t.notThrowsAsync(ch.checkExchange(EX), 'the exchange exists');
});

test('postage-compatible topology declares exactly Python 1.2.1 flags', async (t) => {
  const { vhost, connection } = await freshVhost(t);
  await app(t, connection, { name: 'N', host: 'H1', pid: 12, groups: ['G'], topology: { mode: 'postage' } });
  const queues = Object.fromEntries((await listQueues(vhost)).map((q) => [q.name, q]));
  for (const name of ['N', 'N@H1', 'N:12@H1']) t.like(queues[name], { durable: false, auto_delete: true, exclusive: false, arguments: {} }, name);
  t.like(queues['N#G'], { durable: false, auto_delete: false, arguments: {} });
  const bindings = (await listBindings(vhost)).filter((b) => b.source === EX).map((b) => `${b.destination} <- ${b.key}`).sort();
  t.true(bindings.includes('N:12@H1 <- 12@H1'));
  t.true(bindings.includes('N <- N/rr'));
});

/** Sends `hit` with a tag to `key` and returns which apps got it. */
async function fanout(connection: Connection, apps: Record<string, Recorder>, key: string): Promise<string[]> {
  const tag = `${key}-${Math.random()}`;
  const p = appProducer(connection);
  await p.message_hit(tag, { _key: key });
  // A barrier instead of a pause: each app reads its own queue in order, so once it has
  // answered a ping sent there after the hit, it has handled the hit if the key reached it.
  await Promise.all(Object.values(apps).map((a) => p.rpc_ping({}, { _key: a.addresses.instanceKey, _timeout: 10, _max_retry: 0 })));
  return Object.entries(apps)
    .filter(([, a]) => a.hits.includes(tag))
    .map(([label]) => label)
    .sort();
}

test('addressing: every key reaches exactly who it should', async (t) => {
  const { vhost, connection } = await freshVhost(t);
  const apps = {
    n1: await app(t, connection, { name: 'N', host: 'H1', pid: 101 }),
    n2: await app(t, connection, { name: 'N', host: 'H1', pid: 102 }),
    n3: await app(t, connection, { name: 'N', host: 'H2', pid: 103 }),
    m1: await app(t, connection, { name: 'M', host: 'H1', pid: 101 }),
  };
  t.deepEqual(await fanout(connection, apps, 'N'), ['n1', 'n2', 'n3'], 'N reaches all three N and no M');
  t.deepEqual(await fanout(connection, apps, '@H1'), ['m1', 'n1', 'n2'], '@H1 reaches exactly the apps on H1');
  t.deepEqual(await fanout(connection, apps, 'N@H1'), ['n1', 'n2'], 'N@H1 reaches the two N on H1');
  t.deepEqual(await fanout(connection, apps, '101@H1'), ['m1', 'n1'], 'P@H reaches every app of that process');
  t.deepEqual(await fanout(connection, apps, 'N:102@H1'), ['n2'], 'the instance key reaches exactly one');
  t.deepEqual(await fanout(connection, apps, 'M'), ['m1']);
  t.deepEqual(await fanout(connection, apps, 'nobody'), []);

  const ping = (await appProducer(connection).rpc_ping({}, { _key: 'N:103@H2', _timeout: 5 })) as MessageResult<FingerprintDict>;
  t.like(ping.value, { name: 'N', host: 'H2', pid: '103', type: 'application', vhost });
});

async function roundRobin(t: ExecutionContext, key: string, apps: Recorder[], connection: Connection): Promise<void> {
  const p = appProducer(connection);
  await Promise.all(Array.from({ length: 300 }, (_, i) => p.message_hit(`${key}:${i}`, { _key: key })));
  await waitFor(`300 on ${key}`, () => apps.reduce((n, a) => n + a.hits.filter((h) => String(h).startsWith(`${key}:`)).length, 0) >= 300);
  await sleep(200);
  const all = apps.flatMap((a) => a.hits.filter((h) => String(h).startsWith(`${key}:`)));
  t.is(all.length, 300, `${key}: each message delivered once`);
  t.is(new Set(all).size, 300, `${key}: no duplicates`);
  for (const a of apps) t.true(a.hits.filter((h) => String(h).startsWith(`${key}:`)).length > 0, `${key}: spread over every consumer (${a.fingerprint.pid})`);
}

test('round-robin keys N/rr, N@H1/rr and N#G/rr deliver each of 300 messages exactly once, spread over the consumers', async (t) => {
  const { connection } = await freshVhost(t);
  const n1 = await app(t, connection, { name: 'N', host: 'H1', pid: 201, groups: ['G'], prefetch: 1 });
  const n2 = await app(t, connection, { name: 'N', host: 'H1', pid: 202, groups: ['G'], prefetch: 1 });
  const n3 = await app(t, connection, { name: 'N', host: 'H2', pid: 203, prefetch: 1 });
  await roundRobin(t, 'N/rr', [n1, n2, n3], connection);
  await roundRobin(t, 'N@H1/rr', [n1, n2], connection);
  await roundRobin(t, 'N#G/rr', [n1, n2], connection);
  t.false(n3.hits.some((h) => String(h).startsWith('N@H1/rr:') || String(h).startsWith('N#G/rr:')));
});

test('groups: given at start, joined and left at run time', async (t) => {
  const { connection } = await freshVhost(t);
  const a = await app(t, connection, { name: 'N', host: 'H1', pid: 301, groups: ['G1'] });
  const b = await app(t, connection, { name: 'N', host: 'H1', pid: 302 });
  const apps = { a, b };
  t.deepEqual(await fanout(connection, apps, 'N#G1'), ['a']);
  t.deepEqual(await fanout(connection, apps, 'N#G2'), []);
  await appProducer(connection).message_join_group({ group_name: 'G2' }, { _key: 'N:302@H1' });
  await waitFor('joined', () => b.groups.includes('G2'));
  t.deepEqual(await fanout(connection, apps, 'N#G2'), ['b']);
  await appProducer(connection).message_leave_group({ group_name: 'G2' }, { _key: 'N' });
  await waitFor('left', () => !b.groups.includes('G2'));
  t.deepEqual(await fanout(connection, apps, 'N#G2'), [], 'leave_group stops delivery on N#G');
  t.deepEqual(await fanout(connection, apps, 'N#G1'), ['a']);
});

test('leave_group on one member leaves N#G/rr working for the others', async (t) => {
  const { connection } = await freshVhost(t);
  const a = await startProcessor(t, new Recorder({ connection, name: 'N', host: 'H1', pid: 1, groups: ['G'] }));
  const b = await startProcessor(t, new Recorder({ connection, name: 'N', host: 'H1', pid: 2, groups: ['G'] }));
  await appProducer(connection).message_leave_group({ group_name: 'G' }, { _key: 'N:1@H1' });
  await waitFor('a left', () => !a.groups.includes('G'));
  const p = appProducer(connection);
  for (let i = 0; i < 10; i++) await p.message_hit(`rr${i}`, { _key: 'N#G/rr' });
  await p.message_hit('fan', { _key: 'N#G' });
  await waitFor('all ten and the fan-out at b', () => b.hits.length === 11);
  await sleep(200);
  t.deepEqual(a.hits, [], 'a gets nothing of G any more');
});

test('1,000 messages sent to N/rr while the only N is stopped and started again all arrive, exactly once', async (t) => {
  const { connection } = await freshVhost(t);
  const first = await app(t, connection, { name: 'N', host: 'H1', pid: 401 });
  const p = appProducer(connection);
  const sends: Array<Promise<void>> = [];
  let i = 0;
  const sendSome = (n: number) => {
    for (let k = 0; k < n; k++, i++) sends.push(p.message_hit(i, { _key: 'N/rr' }));
  };
  sendSome(300);
  await sleep(50);
  const stopping = first.close('restart');
  sendSome(400);
  await stopping;
  sendSome(300);
  await Promise.all(sends);
  const second = await app(t, connection, { name: 'N', host: 'H1', pid: 401 });
  await waitFor('1000 handled', () => first.hits.length + second.hits.length >= 1000, 20_000);
  await sleep(300);
  const all = [...first.hits, ...second.hits].map(Number);
  t.is(all.length, 1000);
  t.is(new Set(all).size, 1000);
});

test('the unique queue outlives a restart but expires once the process is gone; quit deletes it', async (t) => {
  const { vhost, connection } = await freshVhost(t);
  // Long enough to survive a restart on a loaded machine, short enough for a test.
  const topology = { uniqueQueueExpires: 8000 };
  const a = await app(t, connection, { name: 'N', host: 'H1', pid: 501, topology });
  await a.close('restart');
  await appProducer(connection).message_hit('kept', { _key: 'N:501@H1' });
  const again = await app(t, connection, { name: 'N', host: 'H1', pid: 501, topology });
  await waitFor('message kept across the restart', () => again.hits.includes('kept'));
  await again.close('restart');
  // A passive declare, not a rabbitmqctl read-back: that one took longer than the 8 s
  // expiry on a loaded machine, so the queue was (rightly) gone by the time it answered.
  t.true(await queueExists(connection, 'N:501@H1'), 'the unique queue is still there right after the restart');
  const t0 = Date.now();
  // Polled with list_queues: a passive declare would renew the queue's lease.
  const names = async () => (await listQueues(vhost)).map((q) => q.name);
  await waitFor('unique queue expired', async () => !(await names()).includes('N:501@H1'), 60_000, 500);
  t.log(`unique queue gone ${Date.now() - t0} ms after the last check (x-expires 8000 ms)`);
  t.true(await queueExists(connection, 'N'), 'the shared queue stays');

  const q = await app(t, connection, { name: 'Q', host: 'H1', pid: 502 });
  t.true(await queueExists(connection, 'Q:502@H1'));
  await appProducer(connection).message_quit({}, { _key: 'Q:502@H1' });
  await waitFor('quit', () => q.state === 'stopped');
  t.false(await queueExists(connection, 'Q:502@H1'), 'quit deletes the unique queue');
});

class Thrower extends GenericApplication {
  static override appName = 'thrower';
  @MessageHandler('command', 'fail')
  fail(): void {
    throw new TypeError('cannot handle this');
  }
}

test('a message whose handler throws ends in the dead-letter queue with the reason recorded', async (t) => {
  const { connection } = await freshVhost(t);
  await startProcessor(t, new Thrower({ connection, host: 'H1' }));
  await appProducer(connection).message_fail({ n: 1 }, { _key: 'thrower/rr' });
  const ch = await connection.createChannel();
  const m = await waitFor('dead-lettered', () => ch.get(deadLetterQueue('thrower'), { noAck: true }));
  t.like(m.properties.headers, { 'x-postage-reason': 'handler-error', 'x-postage-error': 'cannot handle this', 'x-postage-queue': 'thrower', 'x-postage-app': 'thrower' });
  t.like(JSON.parse(m.content.toString()), { name: 'fail', content: { parameters: { n: 1 } } });
});

test('names with address separators are refused with the bad value named', (t) => {
  const err = t.throws(() => new Recorder({ name: 'a@b' }));
  t.regex(err?.message ?? '', /name: .*"a@b"/);
  t.is((err as { code?: string }).code, 'POSTAGE_ERR_INVALID_ARGUMENT');
});
