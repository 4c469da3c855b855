/** Regressions for faults found in review: each test failed before its fix. */
import amqp from 'amqplib';
import { Exchange, GenericProducer, MessageHandler, MessageProcessor, MessageResultException, RejectMessage, type MessageResult } from 'postage';
import { brokerTest as test, freshVhost, listQueues, rabbitmqctl } from '../helpers/broker.js';
import { Recorder, appProducer, startProcessor } from '../helpers/apps.js';
import { sleep, waitFor } from '../helpers/wait-for.js';

class RegEx extends Exchange {
  static override name = 'regression-exchange';
}
const eqk = (queue: string) => [[RegEx, [[{ name: queue, flags: { durable: true } }, 'k']]]] as const;
function producer(connection: import('postage').Connection): GenericProducer {
  class P extends GenericProducer {
    static override eks = [[RegEx, 'k']] as const;
  }
  return new P({ connection });
}

test('a reject among batched acks (concurrency 3) keeps the channel alive and the processor consuming', async (t) => {
  const { connection } = await freshVhost(t);
  const handled: number[] = [];
  class Mixed extends MessageProcessor {
    @MessageHandler('command', 'job')
    async job(content: { parameters: number }): Promise<void> {
      if (content.parameters === 1) throw new RejectMessage('no');
      if (content.parameters === 0) await sleep(200);
      handled.push(content.parameters);
    }
  }
  const m = await startProcessor(t, new Mixed({ connection, eqk: eqk('rej-q'), concurrency: 3 }));
  const p = producer(connection);
  for (let i = 0; i < 3; i++) await p.message_job(i);
  await waitFor('0 and 2', () => handled.includes(0) && handled.includes(2));
  await sleep(200);
  for (let i = 3; i < 8; i++) await p.message_job(i);
  await waitFor('later messages consumed', () => [3, 4, 5, 6, 7].every((n) => handled.includes(n)));
  t.deepEqual(handled.sort(), [0, 2, 3, 4, 5, 6, 7], 'nothing handled twice');
  t.is(m.consumer.reopens, 0, 'the channel never died');
});

test('a consumer whose channel dies (queue deleted under it) consumes again', async (t) => {
  const { vhost, connection } = await freshVhost(t);
  const app = await startProcessor(t, new Recorder({ connection, name: 'D', host: 'H1', pid: 9 }));
  await rabbitmqctl('delete_queue', '-p', vhost, 'D');
  await waitFor('re-declared and consumed', async () => (await listQueues(vhost)).find((q) => q.name === 'D')?.consumers === 1, 20_000);
  await appProducer(connection).message_hit('back', { _key: 'D/rr' });
  await waitFor('handled', () => app.hits.includes('back'));
  t.true(app.consumer.reopens >= 1);
});

test('after the connection drops, prefetched deliveries are not handled twice', async (t) => {
  const { vhost, connection } = await freshVhost(t);
  const seen = new Map<number, number>();
  class Slowish extends MessageProcessor {
    @MessageHandler('command', 'job')
    async job(content: { parameters: number }): Promise<void> {
      await sleep(2);
      seen.set(content.parameters, (seen.get(content.parameters) ?? 0) + 1);
    }
  }
  await startProcessor(t, new Slowish({ connection, eqk: eqk('dup-q'), prefetch: 50 }));
  const p = producer(connection);
  await Promise.all(Array.from({ length: 200 }, (_, i) => p.message_job(i)));
  await waitFor('some handled', () => seen.size >= 30);
  await rabbitmqctl('close_all_connections', '--vhost', vhost, 'regression');
  await waitFor('all 200 handled', () => seen.size === 200, 30_000);
  await sleep(300);
  const duplicates = [...seen.values()].filter((n) => n > 1).length;
  t.log(`duplicates after the drop: ${duplicates}`);
  t.true(duplicates < 10, `${duplicates} handled twice (the prefetch of 50 was handled twice before the fix)`);
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

test('a late reply without a correlation id never answers a different call', async (t) => {
  const { url, connection } = await freshVhost(t);
  const raw = await amqp.connect(url);
  t.teardown(() => raw.close());
  const ch = await raw.createChannel();
  await ch.assertExchange('regression-exchange', 'direct', { durable: true });
  const { queue } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(queue, 'regression-exchange', 'late-python');
  await ch.consume(queue, (m) => {
    if (!m) return;
    const reply = { type: 'result', name: 'none', category: 'message', version: '2', fingerprint: {}, content: { type: 'success', value: 'late', message: '' }, _reserved: {} };
    // pika-style: no correlation id, and too late for the caller.
    setTimeout(() => ch.publish('', m.properties.replyTo as string, Buffer.from(JSON.stringify(reply))), 600);
  }, { noAck: true });
  const p = producer(connection);
  const first = await p.rpc_x({}, { _key: 'late-python', _timeout: 0.3, _max_retry: 0 });
  t.true(first instanceof MessageResultException);
  const second = (await p.rpc_x({}, { _key: 'nobody-listens', _timeout: 1, _max_retry: 0 })) as MessageResult;
  t.true(second instanceof MessageResultException, `the late reply must not answer the second call (got ${JSON.stringify(second.value)})`);
});

test('an exchange declaration the broker refuses does not break other sends', async (t) => {
  const { connection } = await freshVhost(t);
  const ch = await connection.createChannel();
  await ch.assertExchange('clash', 'fanout', { durable: true });
  class Clash extends Exchange {
    static override name = 'clash'; // declared direct here: the broker refuses
  }
  class Bad extends GenericProducer {
    static override eks = [[Clash, 'k']] as const;
  }
  const got: string[] = [];
  const m = await startProcessor(t, new (class extends MessageProcessor {
    @MessageHandler('command', 'ok')
    ok(): void {
      got.push('ok');
    }
  })({ connection, eqk: eqk('clash-q') }));
  const good = producer(connection);
  const results = await Promise.allSettled([new Bad({ connection }).message_x({}), ...Array.from({ length: 20 }, () => good.message_ok({}))]);
  t.is(results[0]?.status, 'rejected');
  t.is(results.slice(1).filter((r) => r.status === 'fulfilled').length, 20);
  await waitFor('20 delivered', () => got.length === 20);
  t.is(m.stats.handled, 20);
});
