/**
 * Least privilege, tested: the users config/rabbitmq-permissions.sh makes can do their job and
 * no more. A daemon user runs postaged and its plugins (consume, declare, reply, dead-letter,
 * restart); an operator drives them with the CLI (ping, rpc, status, ps, restart, quit) but
 * cannot declare, bind or delete a queue; a plain application's user runs that application.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { Connection, GenericApplicationExchange, GenericProducer } from 'postage';
import { BROKER_HOST, BROKER_PORT, brokerTest, rabbitmqctl, scratchVhost } from '../helpers/broker.js';
import { Recorder, startProcessor } from '../helpers/apps.js';
import { postage } from '../helpers/postage-cli.js';
import { FIXTURES, ROOT, startDaemon, tempDir } from '../helpers/spawn.js';
import { waitFor } from '../helpers/wait-for.js';

const RECIPE = path.join(ROOT, 'config', 'rabbitmq-permissions.sh');

function recipe(...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('bash', [RECIPE, ...args], { env: { ...process.env, PATH: `${process.env['PATH']}:/usr/sbin` } }, (err, stdout, stderr) => (err ? reject(new Error(stderr || err.message)) : resolve(stdout)));
  });
}

async function user(t: ExecutionContext, vhost: string, role: string, ...apps: string[]): Promise<{ name: string; password: string; url: string }> {
  const name = `${role}-${vhost.slice(-8)}`;
  const password = `pw-${Math.random().toString(36).slice(2)}`;
  await rabbitmqctl('add_user', name, password);
  t.teardown(() => rabbitmqctl('delete_user', name).then(() => undefined, () => undefined));
  const printed = await recipe(vhost, role, name, ...apps);
  t.log(printed.trim());
  return { name, password, url: `amqp://${name}:${password}@${BROKER_HOST}:${BROKER_PORT}/${encodeURIComponent(vhost)}` };
}

brokerTest('a daemon user runs postaged and its plugins; an operator drives them with the CLI and can do nothing else', async (t) => {
  const { vhost } = await scratchVhost(t, 'postaged-perms');
  const daemonUser = await user(t, vhost, 'daemon', 'postaged', 'echo-mjs');
  const operator = await user(t, vhost, 'operator');
  const dir = path.join(tempDir(t), 'plugins');
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(FIXTURES, 'echo-mjs.mjs'), path.join(dir, 'echo-mjs.mjs'));
  const daemon = await startDaemon(t, { url: daemonUser.url, args: ['--plugins', dir, '--no-watch'] });
  t.regex(daemon.find('postaged ready')[0]?.['applications']?.toString() ?? '', /echo-mjs:running/);

  const as = (args: string[]) => postage(operator.url, args);
  const ping = await as(['ping', 'echo-mjs/rr', '--timeout', '10']);
  t.is(ping.code, 0, `ping: ${ping.stderr}`);
  const echo = await as(['rpc', 'echo-mjs/rr', 'echo', '{"text": "least privilege"}', '--timeout', '10']);
  t.is(echo.code, 0, `rpc: ${echo.stderr}`);
  t.regex(echo.stdout, /least privilege/);
  const ps = await as(['ps', '--expect', '1', '--timeout', '10']);
  t.is(ps.code, 0, `ps: ${ps.stderr}`);
  // A message that fails is dead-lettered with the daemon user's rights.
  const bad = await as(['send', 'echo-mjs/rr', 'no-such-command']);
  t.is(bad.code, 0);
  const restart = await as(['restart', 'postaged']);
  t.is(restart.code, 0, `restart: ${restart.stderr}`);
  await daemon.waitForLine((l) => l.message === 'postaged ready' && l['generation'] === 2, { timeout: 30_000 });

  // What the operator may not do: declare, bind or delete a queue (postage topology needs a daemon's user).
  const migrate = await as(['topology', 'migrate', 'echo-mjs', '--mode', 'postage']);
  t.not(migrate.code, 0);
  t.regex(migrate.stderr, /ACCESS_REFUSED|403/);
  const operatorConnection = new Connection({ url: operator.url, env: {} });
  t.teardown(() => operatorConnection.close());
  const err = await t.throwsAsync(operatorConnection.withChannel((ch) => ch.assertQueue('operator-made-queue')));
  t.regex(err?.message ?? '', /ACCESS_REFUSED/);

  const quit = await as(['quit', 'postaged']);
  t.is(quit.code, 0);
  t.deepEqual(await daemon.exited, { code: 0, signal: null });
  t.deepEqual(daemon.find((l) => l.level === 'error').map((l) => l.message), [], 'no error under these permissions');
});

brokerTest("a plain application's user runs that application, and only that one", async (t) => {
  const { vhost } = await scratchVhost(t, 'postaged-perms');
  const appUser = await user(t, vhost, 'app', 'billing');
  const connection = new Connection({ url: appUser.url, env: {} });
  t.teardown(() => connection.close());
  const billing = await startProcessor(t, new Recorder({ connection, name: 'billing', host: 'H1', pid: 7 }));
  class P extends GenericProducer {
    static override eks = [[GenericApplicationExchange, 'billing/rr']] as const;
  }
  await new P({ connection }).sendCommand('hit', 'one');
  await waitFor('handled', () => billing.hits.includes('one'));
  const other = new Recorder({ connection, name: 'payroll', host: 'H1', pid: 7 });
  const scheduler = new (await import('postage')).MicroScheduler();
  scheduler.add(other);
  void scheduler.run();
  await t.throwsAsync(other.ready(), { message: /ACCESS_REFUSED/ }, 'another name is refused');
  await other.close();
});
