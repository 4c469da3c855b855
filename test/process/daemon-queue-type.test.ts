/**
 * Switching a vhost between classic and quorum queues (`topology.quorum`). RabbitMQ
 * cannot change a queue's type: a daemon declaring `postaged` as quorum where a classic
 * `postaged` exists is refused (406 PRECONDITION_FAILED). docs/operations.md gives the procedure;
 * the first test runs it as written, the second states what the daemon must do meanwhile.
 */
import { execFile } from 'node:child_process';
import { brokerTest, freshVhost, listQueues } from '../helpers/broker.js';
import { pluginFolder, ROOT, spawnDaemon, startDaemon } from '../helpers/spawn.js';

/** The CLI against the test's vhost. */
function postage(url: string, args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('POSTAGE_'))), POSTAGE_URL: url };
  return new Promise((resolve) => {
    execFile(`${ROOT}/bin/postage`, [...args], { env, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr });
    });
  });
}

brokerTest('the documented in-place switch: stop, postage topology check, postage topology migrate --quorum, start with quorum', async (t) => {
  const { vhost, url } = await freshVhost(t, 'postaged-qtype');
  const dir = pluginFolder(t, ['echo-mjs.mjs']);
  const classic = await startDaemon(t, { url, args: ['--plugins', dir, '--host', 'qtype-host'] });
  t.deepEqual(await classic.stop(), { code: 0, signal: null });
  const shared = ['postaged', 'postaged@qtype-host', 'echo-mjs', 'echo-mjs@qtype-host', 'postage.dead-letter.postaged', 'postage.dead-letter.echo-mjs'];
  const classicQueues = await listQueues(vhost);
  for (const name of shared) t.is(classicQueues.find((q) => q.name === name)?.arguments['x-queue-type'], undefined, `${name} starts classic`);
  // The commands of docs/operations.md.
  const check = await postage(url, ['topology', 'check', ...shared, '--mode', 'durable', '--quorum']);
  t.is(check.code, 1, 'check: they differ from quorum');
  t.regex(check.stderr, /6 queue\(s\) differ from mode durable: postage topology migrate/);
  const migrate = await postage(url, ['topology', 'migrate', ...shared, '--mode', 'durable', '--quorum']);
  t.is(migrate.code, 0, migrate.stderr);
  t.log(migrate.stdout.trim());
  const quorum = await startDaemon(t, { url, args: ['--plugins', dir, '--host', 'qtype-host'], env: { POSTAGED_QUORUM: 'true' } });
  const after = await listQueues(vhost);
  for (const name of shared) t.is(after.find((q) => q.name === name)?.arguments['x-queue-type'], 'quorum', `${name} is quorum now`);
  t.deepEqual(await quorum.stop(), { code: 0, signal: null });
});

/**
 * A 406 on the daemon's own queues is a configuration error: exit 78, which systemd's
 * RestartPreventExitStatus=78 does not loop on, naming the setting and the command that moves
 * the queue (it exited 1 before, and systemd restarted it every 2 s).
 */
brokerTest('a quorum-configured daemon on a vhost with classic shared queues: exit 78 naming the queue and topology.quorum', async (t) => {
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
  t.regex(said, /postage topology migrate 'postaged' --mode durable --quorum/);
});
