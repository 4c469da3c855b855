import type { MessageResult } from 'postage';
import { brokerTest as test, freshVhost, listQueues, rabbitmqctl } from '../helpers/broker.js';
import { Recorder, appProducer, startProcessor } from '../helpers/apps.js';
import { waitFor } from '../helpers/wait-for.js';

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
