/**
 * postaged's configuration from the outside: exit 78 naming the key and the value for every
 * kind of mistake, layering, --print-config without secrets, --help and --version.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import { brokerTest, freshVhost, rabbitmqctl, BROKER_HOST, BROKER_PORT } from '../helpers/broker.js';
import { BIN, controlProducer, ROOT, startDaemon, tempDir } from '../helpers/spawn.js';

const run = promisify(execFile);

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs postaged to completion (config errors exit before any broker is needed). */
async function postaged(args: string[], env: Record<string, string> = {}): Promise<Ran> {
  const t0 = performance.now();
  const clean = { ...process.env };
  for (const k of Object.keys(clean)) if (k.startsWith('POSTAGED_') || k.startsWith('POSTAGE_')) delete clean[k];
  try {
    const { stdout, stderr } = await run(BIN, args, { cwd: ROOT, env: { ...clean, POSTAGE_HOST: '127.0.0.1', POSTAGED_LOG_FORMAT: 'json', ...env }, timeout: 20_000 });
    return { code: 0, stdout, stderr, ms: performance.now() - t0 };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr, ms: performance.now() - t0 };
  }
}

function configFile(t: ExecutionContext, content: unknown): string {
  const file = path.join(tempDir(t), 'postaged.json');
  fs.writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

const cases: Array<{ title: string; args?: (t: ExecutionContext) => string[]; env?: Record<string, string>; expect: RegExp[] }> = [
  { title: 'unknown key in the file', args: (t) => ['--config', configFile(t, { brokr: { url: 'amqp://x' } })], expect: [/brokr\.url: unknown key/, /"amqp:\/\/x"/] },
  { title: 'unknown nested key', args: (t) => ['--config', configFile(t, { log: { levl: 'debug' } })], expect: [/log\.levl: unknown key \(value "debug"\)/] },
  { title: 'bad value in the file', args: (t) => ['--config', configFile(t, { drainTimeout: 'soon' })], expect: [/drainTimeout: must be a whole number of milliseconds/, /"soon"/, /from file/] },
  { title: 'bad value in the environment', env: { POSTAGED_DRAIN_TIMEOUT: '-5' }, expect: [/drainTimeout: /, /"-5"/, /env POSTAGED_DRAIN_TIMEOUT/] },
  { title: 'bad value on the command line', args: () => ['--log-level', 'loud'], expect: [/log\.level: must be one of/, /"loud"/, /--log-level/] },
  { title: 'bad boolean', env: { POSTAGED_WATCH: 'maybe' }, expect: [/watch: must be true or false \(value "maybe"\)/] },
  { title: 'missing config file', args: () => ['--config', '/nonexistent/postaged.json'], expect: [/config file not found: \/nonexistent\/postaged\.json/] },
  { title: 'config file that is not JSON', args: (t) => ['--config', configFile(t, '{ "name": ')], expect: [/is not valid JSON/] },
  { title: 'bad per-application option', args: (t) => ['--config', configFile(t, { apps: { echo: { groupz: ['a'] } } })], expect: [/apps\.echo\.groupz: unknown key \(value \["a"\]\)/] },
  { title: 'bad delivery bound', env: { POSTAGED_MAX_DELIVERIES: 'many' }, expect: [/defaults\.maxDeliveries: must be a whole number from 0 \(off\)/, /"many"/, /env POSTAGED_MAX_DELIVERIES/] },
  { title: 'bad per-application delivery bound', args: (t) => ['--config', configFile(t, { apps: { echo: { maxDeliveries: -3 } } })], expect: [/apps\.echo\.maxDeliveries: must be a whole number from 0 \(off\)/, /-3/] },
  { title: 'bad application name', args: () => ['--name', 'bad@name'], expect: [/name: must be a non-empty name/, /"bad@name"/] },
  { title: 'unknown command-line flag', args: () => ['--plugin-dir', 'x'], expect: [/Unknown option '--plugin-dir'/] },
  { title: 'missing plugin folder', args: () => ['--plugins', '/nonexistent/plugins'], expect: [/pluginDir: plugin folder "\/nonexistent\/plugins" cannot be used \(ENOENT\)/] },
  { title: 'shutdown timeout not above the drain timeout', env: { POSTAGED_SHUTDOWN_TIMEOUT: '100' }, expect: [/shutdownTimeout: must be greater than drainTimeout/] },
];

for (const c of cases) {
  test.serial(`config error, ${c.title}: exit 78 naming the key and the value`, async (t) => {
    const r = await postaged(c.args?.(t) ?? [], c.env);
    t.log(`${c.title}: exit ${r.code} after ${r.ms.toFixed(0)} ms: ${r.stderr.trim()}`);
    t.is(r.code, 78);
    for (const e of c.expect) t.regex(r.stderr, e);
  });
}

test('layers: defaults < file < environment < command line; --print-config shows the result without secrets', async (t) => {
  const secret = 'S3cr:t@%/#pw';
  const file = configFile(t, {
    log: { level: 'warn' },
    broker: { url: [`amqp://alice:${encodeURIComponent(secret)}@rabbit.example:5672/prod`], password: secret },
    drainTimeout: 2500,
  });
  const fromFile = await postaged(['--config', file, '--print-config']);
  t.is(fromFile.code, 0);
  const printed = JSON.parse(fromFile.stdout) as { log: { level: string }; drainTimeout: number; watch: boolean; broker: { url: string[]; password: string } };
  t.is(printed.log.level, 'warn');
  t.is(printed.drainTimeout, 2500);
  t.is(printed.watch, true, 'default');
  t.deepEqual(printed.broker.url, ['amqp://alice:***@rabbit.example:5672/prod']);
  t.is(printed.broker.password, '***');
  for (const leak of [secret, encodeURIComponent(secret)]) t.false(fromFile.stdout.includes(leak) || fromFile.stderr.includes(leak), `no ${leak}`);

  const fromEnv = await postaged(['--config', file, '--print-config'], { POSTAGED_LOG_LEVEL: 'error', POSTAGED_WATCH: 'false' });
  t.is((JSON.parse(fromEnv.stdout) as typeof printed).log.level, 'error');
  t.is((JSON.parse(fromEnv.stdout) as typeof printed).watch, false);
  const fromArgv = await postaged(['--config', file, '--print-config', '--log-level', 'debug', '--watch'], { POSTAGED_LOG_LEVEL: 'error', POSTAGED_WATCH: 'false' });
  t.is((JSON.parse(fromArgv.stdout) as typeof printed).log.level, 'debug');
  t.is((JSON.parse(fromArgv.stdout) as typeof printed).watch, true);
  const viaEnvFile = await postaged(['--print-config'], { POSTAGED_CONFIG: file });
  t.is((JSON.parse(viaEnvFile.stdout) as typeof printed).drainTimeout, 2500, 'POSTAGED_CONFIG names the file too');
});

test('--help lists every flag and environment variable; --version prints the package version', async (t) => {
  const help = await postaged(['--help']);
  t.is(help.code, 0);
  for (const s of ['--plugins DIR', '--config FILE', '--name NAME', '--print-config', '--version', 'POSTAGE_URL', 'POSTAGED_DRAIN_TIMEOUT', 'docs/config.md']) t.true(help.stdout.includes(s), s);
  const version = await postaged(['--version']);
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  t.is(version.stdout.trim(), pkg.version);
});

brokerTest('a broker password never shows in logs, status or the command line', async (t) => {
  const { vhost, connection } = await freshVhost(t, 'postaged-secret');
  const user = `postaged-secret-${vhost.slice(-8)}`;
  const secret = 'p:@%/#w0rd-x';
  await rabbitmqctl('add_user', user, secret);
  t.teardown(() => rabbitmqctl('delete_user', user).then(() => undefined, () => undefined));
  await rabbitmqctl('set_permissions', '-p', vhost, user, '.*', '.*', '.*');
  const url = `amqp://${user}:${encodeURIComponent(secret)}@${BROKER_HOST}:${BROKER_PORT}/${encodeURIComponent(vhost)}`;
  const dir = path.join(tempDir(t), 'plugins');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'leaky.mjs'), `import { GenericApplication } from 'postage';
export default class Leaky extends GenericApplication {
  async create() { await super.create(); this.logger.info('my connection', { url: process.env.POSTAGE_URL, password: ${JSON.stringify(secret)} }); }
}
`);
  const daemon = await startDaemon(t, { url, args: ['--plugins', dir, '--log-level', 'debug'] });
  const status = await controlProducer(connection).rpcCommand('status', {}, { _key: 'postaged', _timeout: 5, _max_retry: 0 });
  t.true(status.ok);
  const cmdline = fs.readFileSync(`/proc/${daemon.pid}/cmdline`, 'utf8');
  await daemon.stop();
  const everything = [JSON.stringify(daemon.lines), daemon.stderr, daemon.otherLines.join('\n'), JSON.stringify(status.body), cmdline].join('\n');
  t.true(daemon.find('my connection').length === 1, 'the plugin did try to log it');
  for (const leak of [secret, encodeURIComponent(secret)]) t.false(everything.includes(leak), `no trace of ${leak}`);
});
