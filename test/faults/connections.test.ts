/**
 * Fault catalogue, broker-side faults on the main node that touch only the test's own vhost:
 * #1 connection drop, #6 queue deleted under its consumer, #8 reconnect race.
 * Real broker, real `postaged` with the probe plugin, the catalogue's test settings
 * (test/helpers/faults.ts). The tests of this file run one after the other: each one loads
 * the machine, and their timings mean more alone.
 */
import anyTest, { type TestFn } from 'ava';
import { brokerReachable, freshVhost, listQueues, rabbitmqctl } from '../helpers/broker.js';
import { FAULT_SETTINGS, Sender, at, closeConnectionsWhen, drainDeadLetters, handled, pings, predeclare, probeLines, queuesDrained, report, tally, waitHandled } from '../helpers/faults.js';
import { pluginFolder, processKey, startDaemon } from '../helpers/spawn.js';
import { waitFor } from '../helpers/wait-for.js';

const test: TestFn = brokerReachable || process.env['CI'] === 'true' ? anyTest : (anyTest.skip as unknown as TestFn);

const HOST = 'fault-host';

test.serial('#1 connection drop: close_all_connections mid-stream; consuming again within 3 s, duplicates <= prefetch, one consumer per queue', async (t) => {
  t.timeout(120_000);
  const { url, vhost, connection } = await freshVhost(t, 'fault-1');
  // The catalogue's count: the backlog is published first, and the drop lands when half of
  // it is handled, measured inside the broker (closeConnectionsWhen).
  const COUNT = 10_000;
  const PREFETCH = 50;
  await predeclare(connection);
  const sender = new Sender(connection);
  await sender.many(COUNT, 'probe/rr');
  t.is(sender.ledger.sent.size, COUNT, 'the backlog is in the queue');

  // close_all_connections on the vhost, when half the backlog is acked.
  const drop = closeConnectionsWhen(vhost, 'probe', COUNT / 2, 'fault test 1: connection drop');
  const daemon = await startDaemon(t, { url, args: ['--plugins', pluginFolder(t, ['probe.mjs']), '--host', HOST], env: { ...FAULT_SETTINGS, POSTAGED_PREFETCH: String(PREFETCH) } });
  const dropped = await drop;
  t.true(dropped.closed >= 2, `closed ${dropped.closed} connections (the daemon's and the test's)`);
  const lost = await daemon.waitForLine('lost the broker connection', { timeout: 30_000 });
  const atDrop = probeLines([daemon]).filter((l) => daemon.lines.indexOf(l) < daemon.lines.indexOf(lost)).length;
  const again = await daemon.waitForLine((l) => l.message === 'consuming again' && l.app === 'probe', { timeout: 30_000 });
  await waitHandled(() => [daemon], sender.ledger);
  const firstAfter = probeLines([daemon]).find((l) => daemon.lines.indexOf(l) > daemon.lines.indexOf(lost));
  const consumingAfterMs = at(again) - at(lost);
  const handlingAfterMs = at(firstAfter) - at(lost);

  const queues = await queuesDrained(vhost);
  const appQueues = queues.filter((q) => !q.name.startsWith('postage.dead-letter.'));
  for (const q of appQueues) t.is(q.consumers, 1, `exactly one consumer on ${q.name}`);
  t.true(await pings(connection, 'probe'), 'ping answered');
  t.true(await pings(connection, processKey(daemon).replace(/^\d+/, String(daemon.pid))), 'the daemon answers on P@H');

  const figures = tally(sender.ledger, handled([daemon]), await drainDeadLetters(connection));
  report(t, 1, figures, { queueAtDrop: dropped.messages, droppedAtHandled: atDrop, consumingAgainMs: consumingAfterMs, handlingAgainMs: handlingAfterMs, prefetch: PREFETCH });
  t.true(consumingAfterMs <= 3000, `consuming again after ${consumingAfterMs} ms`);
  t.true(figures.duplicated <= PREFETCH, `${figures.duplicated} duplicates`);
  t.is(figures.deadLettered, 0);
});
