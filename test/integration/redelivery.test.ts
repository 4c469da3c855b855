/**
 * maxDeliveries: a message the broker has delivered that many times without an ack (each time,
 * in production, the process handling it was killed) is dead-lettered before any handler runs,
 * instead of killing the next process too. Quorum queues count deliveries (`x-delivery-count`);
 * here a raw consumer nacks with requeue to run the count up, as the kills would.
 */
import type { ExecutionContext } from 'ava';
import { deadLetterQueue, type ApplicationOptions, type Connection } from 'postage';
import { brokerTest as test, freshVhost } from '../helpers/broker.js';
import { Recorder, appProducer, startProcessor } from '../helpers/apps.js';
import { sleep, waitFor } from '../helpers/wait-for.js';

const OPTIONS: ApplicationOptions = { name: 'P', host: 'H1', pid: 801, topology: { quorum: true } };

/**
 * Declares the application's quorum queues (by running it once), then queues `poison` and the
 * messages of `behind`, each with `nacks` earlier deliveries (as a process that died on
 * `poison` with the others prefetched leaves them), and `good` after them.
 */
async function queueWithDeliveries(t: ExecutionContext, connection: Connection, nacks: number, behind: readonly string[] = []): Promise<void> {
  const first = await startProcessor(t, new Recorder({ connection, ...OPTIONS }));
  await first.close('restart');
  const p = appProducer(connection);
  for (const text of ['poison', ...behind]) await p.message_hit(text, { _key: 'P/rr' });
  for (let i = 0; i < nacks; i++) {
    // One channel a "process": it takes them all unacked and dies; they go back in their order.
    const ch = await connection.createChannel();
    for (const text of ['poison', ...behind]) {
      const m = await waitFor(`${text} delivered`, () => ch.get('P', { noAck: false }));
      t.true(m.content.includes(text));
    }
    await ch.close();
  }
  await p.message_hit('good', { _key: 'P/rr' });
}

test('a message delivered maxDeliveries times without an ack is dead-lettered, not handled; the next one is', async (t) => {
  const { connection } = await freshVhost(t);
  await queueWithDeliveries(t, connection, 3);
  const app = await startProcessor(t, new Recorder({ connection, ...OPTIONS, maxDeliveries: 3 }));
  await waitFor('good handled', () => app.hits.includes('good'));
  t.deepEqual(app.hits, ['good'], 'the handler never saw the poison message');
  const ch = await connection.createChannel();
  const m = await waitFor('dead-lettered', () => ch.get(deadLetterQueue('P'), { noAck: true }));
  t.like(m.properties.headers, { 'x-postage-reason': 'redelivered', 'x-postage-deliveries': 3, 'x-postage-queue': 'P', 'x-postage-app': 'P' });
  t.like(JSON.parse(m.content.toString()), { name: 'hit', content: { parameters: 'poison' } });
  t.like(app.stats, { received: 2, handled: 1, deadLettered: 1, invalid: { redelivered: 1 } });

  // Replayed from the dead-letter queue, even with a count in its headers, it is a first
  // delivery: the broker sets x-delivery-count only when it delivers a message again.
  ch.sendToQueue('P', m.content, { headers: { ...m.properties.headers, 'x-delivery-count': 99 } });
  await waitFor('replayed message handled', () => app.hits.includes('poison'));
});

test('the messages prefetched with it, returned by the same deaths, are handled: only the first over the bound is dead-lettered', async (t) => {
  const { connection } = await freshVhost(t);
  await queueWithDeliveries(t, connection, 3, ['behind-1', 'behind-2']);
  const app = await startProcessor(t, new Recorder({ connection, ...OPTIONS, maxDeliveries: 3 }));
  await waitFor('good handled', () => app.hits.includes('good'));
  t.deepEqual(app.hits, ['behind-1', 'behind-2', 'good'], 'handled in their order; the poison was not');
  t.like(app.stats, { received: 4, handled: 3, deadLettered: 1, invalid: { redelivered: 1 } });
  const ch = await connection.createChannel();
  const m = await waitFor('dead-lettered', () => ch.get(deadLetterQueue('P'), { noAck: true }));
  t.like(JSON.parse(m.content.toString()), { content: { parameters: 'poison' } });
  t.is(await ch.get(deadLetterQueue('P'), { noAck: true }), false, 'nothing else dead-lettered');
});

test('a message delivered fewer than maxDeliveries times is handled as usual', async (t) => {
  const { connection } = await freshVhost(t);
  await queueWithDeliveries(t, connection, 2);
  const app = await startProcessor(t, new Recorder({ connection, ...OPTIONS, maxDeliveries: 3 }));
  await waitFor('both handled', () => app.hits.length >= 2);
  await sleep(100);
  t.deepEqual(app.hits, ['poison', 'good']);
  t.like(app.stats, { handled: 2, deadLettered: 0, invalid: {} });
  const ch = await connection.createChannel();
  t.is(await ch.get(deadLetterQueue('P'), { noAck: true }), false);
});

test('maxDeliveries 0 turns the bound off', async (t) => {
  const { connection } = await freshVhost(t);
  await queueWithDeliveries(t, connection, 3);
  const app = await startProcessor(t, new Recorder({ connection, ...OPTIONS, maxDeliveries: 0 }));
  await waitFor('both handled', () => app.hits.length >= 2);
  t.deepEqual(app.hits, ['poison', 'good']);
});
