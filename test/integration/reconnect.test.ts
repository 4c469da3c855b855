import { Exchange, GenericProducer, MessageHandler, MessageProcessor, type Connection, type MessageResult } from 'postage';
import { brokerTest as test, freshVhost, listQueues, rabbitmqctl } from '../helpers/broker.js';
import { Recorder, appProducer, startProcessor } from '../helpers/apps.js';
import { sleep, waitFor } from '../helpers/wait-for.js';

class ReconnectExchange extends Exchange {
  static override name = 'reconnect-exchange';
}

function reconnectProducer(connection: Connection): GenericProducer {
  class P extends GenericProducer {
    static override eks = [[ReconnectExchange, 'k']] as const;
  }
  return new P({ connection });
}

test('after the broker closes the connection, applications consume again and RPC works', async (t) => {
  const { vhost, connection } = await freshVhost(t);
  const app = await startProcessor(t, new Recorder({ connection, name: 'R', host: 'H1', pid: 7 }));
  const p = appProducer(connection);
  await p.message_hit('before', { _key: 'R/rr' });
  await waitFor('before', () => app.hits.includes('before'));
  const generation = connection.generation;
  await rabbitmqctl('close_all_connections', '--vhost', vhost, 'fault test');
  await waitFor('reconnected', () => connection.generation > generation, 15_000);
  await waitFor('consuming again', async () => (await listQueues(vhost)).find((q) => q.name === 'R')?.consumers === 1, 15_000);
  await p.message_hit('after', { _key: 'R/rr' });
  await waitFor('after', () => app.hits.includes('after'));
  const ping = (await p.rpc_ping({}, { _key: 'R/rr', _timeout: 3 })) as MessageResult<{ name: string }>;
  t.is(ping.value.name, 'R');
  const queues = await listQueues(vhost);
  for (const q of queues.filter((x) => x.name.startsWith('R'))) t.is(q.consumers, 1, `exactly one consumer on ${q.name}`);
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
  await startProcessor(t, new Slowish({ connection, eqk: [[ReconnectExchange, [[{ name: 'dup-q', flags: { durable: true } }, 'k']]]], prefetch: 50 }));
  const p = reconnectProducer(connection);
  await Promise.all(Array.from({ length: 200 }, (_, i) => p.message_job(i)));
  await waitFor('some handled', () => seen.size >= 30);
  await rabbitmqctl('close_all_connections', '--vhost', vhost, 'regression');
  await waitFor('all 200 handled', () => seen.size === 200, 30_000);
  await sleep(300);
  const duplicates = [...seen.values()].filter((n) => n > 1).length;
  t.log(`duplicates after the drop: ${duplicates}`);
  t.true(duplicates < 10, `${duplicates} handled twice (the prefetch of 50 was handled twice before the fix)`);
});
