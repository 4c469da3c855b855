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
