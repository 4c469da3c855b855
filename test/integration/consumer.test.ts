import { Exchange, GenericConsumer, GenericProducer } from 'postage';
import { brokerTest as test, freshVhost, listBindings, listQueues } from '../helpers/broker.js';
import { waitFor } from '../helpers/wait-for.js';

class Ex extends Exchange {
  static override name = 'consumer-exchange';
}

test('GenericConsumer: eqk with flags, queueBind and queueUnbind at run time', async (t) => {
  const { vhost, connection } = await freshVhost(t);
  class C extends GenericConsumer {
    static override eqk = [[Ex, [[{ name: 'q1', flags: { auto_delete: true } }, 'k1'], ['q2', 'k2']]]] as const;
  }
  const consumer = new C({ connection, prefetch: 5 });
  t.teardown(() => consumer.close());
  const got: string[] = [];
  await consumer.start((d) => {
    got.push(`${d.queue}:${JSON.parse(d.message.content.toString()).name}`);
    d.ack();
  });
  const queues = Object.fromEntries((await listQueues(vhost)).map((q) => [q.name, q]));
  t.like(queues['q1'], { auto_delete: true, durable: false, consumers: 1 });
  t.like(queues['q2'], { auto_delete: false, durable: false, consumers: 1 });

  class P extends GenericProducer {
    static override eks = [[Ex, 'k1']] as const;
  }
  const p = new P({ connection });
  await p.message_a({});
  await p.message_b({}, { _key: 'k2' });
  await waitFor('two', () => got.length === 2);
  t.deepEqual(got.sort(), ['q1:a', 'q2:b']);

  await consumer.queueBind(Ex, { name: 'q3', flags: { durable: true } }, 'k3');
  await p.message_c({}, { _key: 'k3' });
  await waitFor('q3', () => got.includes('q3:c'));
  t.true((await listBindings(vhost)).some((b) => b.destination === 'q3' && b.key === 'k3'));
  await consumer.queueUnbind(Ex, 'q3', 'k3');
  t.false((await listBindings(vhost)).some((b) => b.destination === 'q3' && b.key === 'k3'));
  t.deepEqual(consumer.queueNames, ['q1', 'q2', 'q3']);
});

test('GenericConsumer: a re-declaration refused after its channel is lost leaves it recovering, and it consumes again once the refusal is gone', async (t) => {
  // Issue 9, item 1: the consumer kept the rejected set-up promise, showed itself consuming
  // and consumed nothing for good.
  const { connection } = await freshVhost(t);
  class RefusedEx extends Exchange {
    static override name = 'consumer-refused-exchange';
  }
  class C extends GenericConsumer {
    static override eqk = [[RefusedEx, [['rq', 'k']]]] as const;
  }
  const consumer = new C({ connection, prefetch: 5 });
  t.teardown(() => consumer.close());
  const got: number[] = [];
  await consumer.start((d) => {
    got.push(JSON.parse(d.message.content.toString()).content.parameters.n);
    d.ack();
  });
  t.is(consumer.state, 'consuming');

  // The exchange comes back with another type: declaring it as the consumer does is refused (406).
  await connection.withChannel(async (ch) => {
    await ch.deleteExchange(RefusedEx.name);
    await ch.assertExchange(RefusedEx.name, 'fanout', { durable: true });
  });
  // A channel error (404 on a passive declare) takes the consumer's channel: re-opening it is refused.
  const ch = await consumer.getChannel();
  await t.throwsAsync(ch.checkQueue('no-such-queue'));
  await waitFor('recovering with the refusal as its reason', () => consumer.state === 'recovering' && /PRECONDITION_FAILED|inequivalent/.test(consumer.lastError ?? ''), 10_000);

  // The refusal goes: the consumer's own retries (with backoff) declare and consume again.
  await connection.withChannel((c) => c.deleteExchange(RefusedEx.name));
  await waitFor('consuming again', () => consumer.state === 'consuming', 15_000);
  t.is(consumer.lastError, undefined);
  class P extends GenericProducer {
    static override eks = [[RefusedEx, 'k']] as const;
  }
  const { routed } = await new P({ connection }).sendCommand('n', { n: 7 });
  t.true(routed, 'the binding is back');
  await waitFor('the message handled', () => got.includes(7), 10_000);
  t.true(consumer.reopens >= 1);
});
