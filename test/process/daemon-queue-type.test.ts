/**
 * Switching a vhost between classic and quorum shared queues (`topology.quorum`). RabbitMQ
 * cannot change a queue's type: a daemon declaring `postaged` as quorum where a classic
 * `postaged` exists is refused (406 PRECONDITION_FAILED). docs/operations.md gives the procedure;
 * the first test runs it as written, the second states what the daemon must do meanwhile.
 */
import { brokerTest, freshVhost, listQueues, rabbitmqctl } from '../helpers/broker.js';
import { pluginFolder, spawnDaemon, startDaemon } from '../helpers/spawn.js';

brokerTest('the documented in-place switch (stop, check empty, delete the classic shared queues, start with quorum) works', async (t) => {
  const { vhost, url } = await freshVhost(t, 'postaged-qtype');
  const dir = pluginFolder(t, ['echo-mjs.mjs']);
  const classic = await startDaemon(t, { url, args: ['--plugins', dir, '--host', 'qtype-host'] });
  t.deepEqual(await classic.stop(), { code: 0, signal: null });
  const shared = (await listQueues(vhost)).filter((q) => !q.name.includes(':') && !q.name.startsWith('postage.'));
  t.true(shared.length >= 4, `shared queues: ${shared.map((q) => q.name).join(', ')}`);
  t.true(shared.every((q) => q.arguments['x-queue-type'] === undefined || q.arguments['x-queue-type'] === 'classic'));
  // The procedure of docs/operations.md: the shared queues are empty (nothing would be lost), delete them.
  t.true(shared.every((q) => q.messages === 0));
  for (const q of shared) await rabbitmqctl('delete_queue', '-p', vhost, q.name);
  const quorum = await startDaemon(t, { url, args: ['--plugins', dir, '--host', 'qtype-host'], env: { POSTAGED_QUORUM: 'true' } });
  const after = await listQueues(vhost);
  for (const name of ['postaged', 'postaged@qtype-host', 'echo-mjs', 'echo-mjs@qtype-host']) t.is(after.find((q) => q.name === name)?.arguments['x-queue-type'], 'quorum', `${name} is quorum now`);
  t.deepEqual(await quorum.stop(), { code: 0, signal: null });
});

/**
 * Today the daemon exits 1 on the 406 and systemd restarts it every 2 s (Restart=on-failure).
 * The behaviour needed (issue 11: the library's 406 handling gives the error a code): exit 78,
 * a configuration error that RestartPreventExitStatus=78 does not loop on, naming the queue and
 * the setting. Marked `failing` until then; ava turns red the day it passes, so the mark goes.
 */
brokerTest.failing('a quorum-configured daemon on a vhost with classic shared queues: exit 78 naming the queue and topology.quorum', async (t) => {
  const { url } = await freshVhost(t, 'postaged-qtype');
  const dir = pluginFolder(t, ['echo-mjs.mjs']);
  const classic = await startDaemon(t, { url, args: ['--plugins', dir, '--host', 'qtype-host'] });
  await classic.stop();
  const quorum = spawnDaemon(t, { url, args: ['--plugins', dir, '--host', 'qtype-host'], env: { POSTAGED_QUORUM: 'true' } });
  const exit = await quorum.exited;
  const said = `${quorum.stderr}\n${quorum.tail(4)}`;
  t.log(`exit ${JSON.stringify(exit)}: ${said.trim().slice(0, 600)}`);
  t.is(exit.code, 78);
  t.regex(said, /postaged/);
  t.regex(said, /topology\.quorum/);
});
