/**
 * maxDeliveries in the real daemon: a message that kills every process it reaches (here the
 * plugin SIGKILLs its own process, as an OOM kill or systemd's watchdog would) is, on quorum
 * queues, dead-lettered by the process after the last one it killed instead of killing it too;
 * status and metrics count it.
 */
import { deadLetterQueue, type MessageResult } from 'postage';
import { brokerTest as test, freshVhost } from '../helpers/broker.js';
import { metricsPort, scrape } from '../helpers/metrics.js';
import { controlProducer, pluginFolder, spawnDaemon, startDaemon } from '../helpers/spawn.js';
import { waitFor } from '../helpers/wait-for.js';

test('a message that kills the daemon is dead-lettered after maxDeliveries deliveries; the next one is handled', async (t) => {
  const { url, connection } = await freshVhost(t, 'postage-redelivery');
  const dir = pluginFolder(t, ['killer.mjs']);
  const options = { url, args: ['--plugins', dir, '--metrics-listen', '0'], env: { POSTAGED_QUORUM: 'true', POSTAGED_MAX_DELIVERIES: '2' } };
  const producer = controlProducer(connection);

  // Deliveries 1 and 2 each kill a daemon (the message goes back to the shared quorum queue).
  const first = await startDaemon(t, options);
  await producer.sendCommand('die', {}, { _key: 'killer/rr' });
  t.like(await first.waitForExit(), { signal: 'SIGKILL' });
  const second = spawnDaemon(t, options);
  t.like(await second.waitForExit(), { signal: 'SIGKILL' });
  t.is(second.find('killer dying').length, 1);

  // Delivery 3 (x-delivery-count 2) is not handed to the plugin.
  const third = await startDaemon(t, options);
  await producer.sendCommand('ok', {}, { _key: 'killer/rr' });
  await third.waitForLine('killer ok');
  t.is(third.find('killer dying').length, 0);
  t.like(third.find((l) => l.message.startsWith('refused a message delivered too often'))[0], { app: 'killer', reason: 'redelivered' });

  const ch = await connection.createChannel();
  const dead = await waitFor('dead-lettered', () => ch.get(deadLetterQueue('killer'), { noAck: true }));
  t.like(dead.properties.headers, { 'x-postage-reason': 'redelivered', 'x-postage-deliveries': 2, 'x-postage-queue': 'killer' });

  const status = (await producer.rpcCommand('status', {}, { _key: 'postaged', _timeout: 10, _max_retry: 0 })) as MessageResult;
  const killer = (status.value as { applications: Array<{ name: string; invalid?: Record<string, number>; counts: Record<string, number> }> }).applications.find((a) => a.name === 'killer');
  t.deepEqual(killer?.invalid, { redelivered: 1 });
  t.like(killer?.counts, { received: 2, handled: 1, deadLettered: 1 });
  const metrics = await scrape(await metricsPort(third));
  t.is(metrics.get('postaged_messages_invalid_total{app="killer",reason="redelivered"}'), 1);
});
