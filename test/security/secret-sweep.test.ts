/**
 * FAULTS 29, the secret sweep: a broker password holding `:@%/#"\` given by URL, by the
 * environment and by a config file, plus a signing secret and a secret in a plugin's settings:
 * zero hits, raw, URL-encoded or JSON-escaped, in the logs (a plugin even tries to log them),
 * in `status`, in `--print-config`, in the error of a failed start, and in /proc/<pid>/cmdline.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import type { Connection } from 'postage';
import { BROKER_HOST, BROKER_PORT, brokerTest, freshVhost, rabbitmqctl } from '../helpers/broker.js';
import { BIN, controlProducer, startDaemon, tempDir } from '../helpers/spawn.js';

const PASSWORD = 'p:@%/#"\\w0rd-Z';
const SIGNING = 'sign-Key"\\:@%';
const SETTING = 'api-TOKEN-42"x';

/** Every form a secret could leak in. */
function forms(secret: string): string[] {
  return [secret, encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1), JSON.stringify(JSON.stringify(secret)).slice(1, -1)];
}

function leaks(text: string): string[] {
  return [PASSWORD, SIGNING, SETTING].flatMap(forms).filter((f) => text.includes(f));
}

async function brokerUser(t: ExecutionContext, vhost: string): Promise<string> {
  const user = `sweep-${vhost.slice(-8)}`;
  await rabbitmqctl('add_user', user, PASSWORD);
  t.teardown(() => rabbitmqctl('delete_user', user).then(() => undefined, () => undefined));
  await rabbitmqctl('set_permissions', '-p', vhost, user, '.*', '.*', '.*');
  return user;
}

/** A plugin that logs everything it can find: the URL, the environment's secrets, its settings. */
function leakyPlugins(t: ExecutionContext): string {
  const dir = path.join(tempDir(t), 'plugins');
  fs.mkdirSync(dir);
  fs.writeFileSync(
    path.join(dir, 'leaky.mjs'),
    `import { GenericApplication } from 'postage';
export default class Leaky extends GenericApplication {
  async create() {
    await super.create();
    this.logger.info('leaking', { url: process.env.POSTAGE_URL, password: process.env.POSTAGE_PASSWORD, settings: this.settings, plain: ${JSON.stringify(PASSWORD)} });
    this.logger.info('leaking in the message: ' + JSON.stringify(this.settings) + ' ' + ${JSON.stringify(PASSWORD)});
  }
}
`,
  );
  return dir;
}

function configFile(t: ExecutionContext, content: object): string {
  const file = path.join(tempDir(t, 'postaged-sweep-'), 'postaged.json');
  fs.writeFileSync(file, JSON.stringify(content), { mode: 0o600 });
  return file;
}

function keyFile(t: ExecutionContext): string {
  const file = path.join(tempDir(t, 'postaged-sweep-'), 'control.keys');
  fs.writeFileSync(file, `${SIGNING}\n`, { mode: 0o600 });
  return file;
}

function run(args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    execFile(BIN, args, { env: { ...process.env, POSTAGED_LOG_FORMAT: 'json', ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, out: `${stdout}\n${stderr}` });
    });
  });
}

async function sweep(t: ExecutionContext, how: 'url' | 'env' | 'file', connection: Connection, vhost: string, user: string): Promise<void> {
  const url = `amqp://${user}:${encodeURIComponent(PASSWORD)}@${BROKER_HOST}:${BROKER_PORT}/${encodeURIComponent(vhost)}`;
  const settings = { apps: { leaky: { settings: { apiToken: SETTING, region: 'eu' } } }, security: { signingKeyFile: keyFile(t) } };
  const broker = { hosts: [BROKER_HOST], port: BROKER_PORT, vhost, user };
  const setups = {
    url: { env: { POSTAGE_URL: url }, config: settings },
    env: { env: { POSTAGE_USER: user, POSTAGE_PASSWORD: PASSWORD, POSTAGE_HOST: BROKER_HOST, POSTAGE_VHOST: vhost, POSTAGE_URL: '' }, config: settings },
    file: { env: { POSTAGE_URL: '' }, config: { ...settings, broker: { ...broker, password: PASSWORD } } },
  } as const;
  const { env, config } = setups[how];
  const file = configFile(t, config);
  const dir = leakyPlugins(t);
  const name = `sweep-${how}`;
  const daemon = await startDaemon(t, { url: env.POSTAGE_URL || 'amqp://unused', args: ['--plugins', dir, '--config', file, '--name', name, '--log-level', 'debug'], env: { ...env } });
  await daemon.waitForLine('leaking');
  const status = await controlProducer(connection).rpcCommand('status', {}, { _key: name, _timeout: 15, _max_retry: 0 });
  t.true(status.ok, `${how}: status answered`);
  const cmdline = fs.readFileSync(`/proc/${daemon.pid}/cmdline`, 'utf8');
  const printed = await run(['--plugins', dir, '--config', file, '--print-config'], env);
  t.is(printed.code, 0, printed.out);
  t.regex(printed.out, /secrets replaced by \*\*\*: .*apps\.leaky\.settings\.apiToken/, `${how}: --print-config says what it hid`);
  // A failed start: the right password, a vhost that does not exist.
  const failed = await run(['--plugins', dir, '--config', file, '--vhost', 'no-such-vhost', '--name', `${name}-fail`], { ...env, POSTAGED_CONNECT_ATTEMPTS: '1', ...(how === 'url' ? { POSTAGE_URL: url.replace(encodeURIComponent(vhost), 'no-such-vhost') } : {}) });
  t.not(failed.code, 0, `${how}: the start failed`);
  await daemon.stop();
  const everything = [JSON.stringify(daemon.lines), daemon.stderr, daemon.otherLines.join('\n'), JSON.stringify(status.body), cmdline, printed.out, failed.out].join('\n');
  t.true(daemon.find('leaking').length === 1, `${how}: the plugin did try`);
  t.deepEqual(leaks(everything), [], `${how}: no trace of any secret`);
}

for (const how of ['url', 'env', 'file'] as const) {
  brokerTest(`a password given by ${how}, a signing secret and a secret setting never show, in any form`, async (t) => {
    const { vhost, connection } = await freshVhost(t, 'postaged-sweep');
    const user = await brokerUser(t, vhost);
    await sweep(t, how, connection, vhost, user);
  });
}

brokerTest('a config file holding a password that others can read is warned about, at start', async (t) => {
  const { vhost } = await freshVhost(t, 'postaged-sweep');
  const user = await brokerUser(t, vhost);
  const file = configFile(t, { broker: { hosts: [BROKER_HOST], port: BROKER_PORT, vhost, user, password: PASSWORD } });
  fs.chmodSync(file, 0o644);
  const daemon = await startDaemon(t, { url: '', args: ['--plugins', tempDir(t), '--config', file], env: { POSTAGE_URL: '' } });
  const warning = daemon.find((l) => l.level === 'warn' && /holds secrets and is readable by every user \(mode 0644\): chmod 600 it/.test(l.message));
  t.is(warning.length, 1);
});
