/**
 * FAULTS 28, signed control: with a secret configured, postaged refuses control commands that
 * are unsigned, badly signed, two minutes old, or replayed (also after a re-exec), counts them
 * in status and logs them once per sender; one valid signed restart is acted on once; the CLI
 * signs by itself; ordinary messages (a Python peer's too) are unaffected.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import amqp from 'amqplib';
import { Connection, GenericApplicationExchange, GenericProducer, JsonEncoder, MessageCommand, type DaemonStatus } from 'postage';
import { signBody } from 'postage/internal';
import { brokerTest, freshVhost } from '../helpers/broker.js';
import { postage } from '../helpers/postage-cli.js';
import { peerTest, startPythonClient } from '../helpers/python-peer.js';
import { controlProducer, FIXTURES, startDaemon, tempDir, type DaemonProcess } from '../helpers/spawn.js';
import { waitFor } from '../helpers/wait-for.js';

const SECRET = 'the-fleet-secret-2026';

function keyFile(t: ExecutionContext, secrets: readonly string[]): string {
  const file = path.join(tempDir(t, 'postaged-keys-'), 'control.keys');
  fs.writeFileSync(file, `# control keys\n${secrets.join('\n')}\n`, { mode: 0o600 });
  return file;
}

async function signedDaemon(t: ExecutionContext, name: string): Promise<{ daemon: DaemonProcess; url: string; vhost: string; connection: Connection; keys: string }> {
  const { url, vhost, connection } = await freshVhost(t, 'postaged-signed');
  const keys = keyFile(t, [SECRET]);
  const dir = path.join(tempDir(t), 'plugins');
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(FIXTURES, 'echo-mjs.mjs'), path.join(dir, 'echo-mjs.mjs'));
  const daemon = await startDaemon(t, { url, args: ['--plugins', dir, '--no-watch', '--name', name], env: { POSTAGE_SIGNING_KEY_FILE: keys } });
  return { daemon, url, vhost, connection, keys };
}

async function status(connection: Connection, name: string): Promise<DaemonStatus> {
  const r = await controlProducer(connection).rpcCommand('status', {}, { _key: name, _timeout: 15, _max_retry: 0 });
  if (!r.ok) throw new Error(r.message);
  return r.value as DaemonStatus;
}

/** Publishes a body as it is (a forger, or a replay of a captured message). */
async function publishRaw(url: string, key: string, body: object): Promise<void> {
  const conn = await amqp.connect(url);
  const ch = await conn.createConfirmChannel();
  ch.publish(GenericApplicationExchange.name, key, new JsonEncoder().encode(body), { contentType: 'application/json' });
  await ch.waitForConfirms();
  await conn.close();
}

const refusedOf = (s: DaemonStatus, app: string): Record<string, number> => s.applications.find((a) => a.name === app)?.refused ?? {};

brokerTest('unsigned, badly signed and stale restarts are refused and counted; a valid one is acted on once; a replay after the re-exec is refused', async (t) => {
  const name = 'signd';
  const { daemon, url, connection } = await signedDaemon(t, name);

  // Unsigned: a producer with no secret (the test's own connection has none).
  await controlProducer(connection).sendCommand('restart', {}, { _key: name });
  // Badly signed: another secret.
  const forger = new Connection({ url, signing: { secrets: ['not-the-secret'] } });
  t.teardown(() => forger.close());
  class Forger extends GenericProducer {
    static override eks = [[GenericApplicationExchange, name]] as const;
  }
  await new Forger({ connection: forger }).sendCommand('restart', {});
  // Stale: signed two minutes ago.
  const stale = new MessageCommand('restart', {}).setFingerprint({ name: 'old-operator' }).body;
  signBody(stale, name, [SECRET], Date.now() - 120_000);
  await publishRaw(url, name, stale);
  await waitFor('three refusals counted', async () => Object.values(refusedOf(await status(connection, name), name)).reduce((a, b) => a + b, 0) === 3);
  const s1 = await status(connection, name);
  t.deepEqual(refusedOf(s1, name), { unsigned: 1, 'bad-signature': 1, stale: 1 });
  t.is(s1.generation, 1, 'none of them restarted the daemon');
  for (const reason of ['unsigned', 'bad-signature', 'stale']) t.is(daemon.find((l) => l.message === `refused a control command: ${reason}`).length, 1, `${reason}: logged`);

  // Valid: signed now with the secret, captured so that it can be replayed.
  const valid = new MessageCommand('restart', { n: 1 }).setFingerprint({ name: 'operator' }).body;
  signBody(valid, name, [SECRET]);
  await publishRaw(url, name, valid);
  await daemon.waitForLine((l) => l.message === 'postaged ready' && l['generation'] === 2, { timeout: 30_000 });
  // The same bytes again, to the next generation: a replay (its nonce came across the re-exec).
  await publishRaw(url, name, valid);
  await waitFor('the replay refused', async () => (refusedOf(await status(connection, name), name)['replayed'] ?? 0) === 1);
  const s2 = await status(connection, name);
  t.is(s2.generation, 2, 'acted on once');
  t.is(daemon.find('re-exec').length, 1);
});

brokerTest('the CLI signs with the key file of the environment (or of its --config); without it, its restart is refused', async (t) => {
  const name = 'signcli';
  const { daemon, url, connection, keys } = await signedDaemon(t, name);
  const unsigned = await postage(url, ['restart', name]);
  t.is(unsigned.code, 0, 'the broker took it');
  await waitFor('refused', async () => (refusedOf(await status(connection, name), name)['unsigned'] ?? 0) === 1);
  const signed = await postage(url, ['restart', name], { env: { POSTAGE_SIGNING_KEY_FILE: keys } });
  t.is(signed.code, 0, signed.stderr);
  await daemon.waitForLine((l) => l.message === 'postaged ready' && l['generation'] === 2, { timeout: 30_000 });
  const config = path.join(tempDir(t), 'postaged.json');
  fs.writeFileSync(config, JSON.stringify({ security: { signingKeyFile: keys } }));
  const viaConfig = await postage(url, ['join', `echo-mjs`, 'blue', '--config', config]);
  t.is(viaConfig.code, 0, viaConfig.stderr);
  await waitFor('joined', async () => (await status(connection, name)).applications.find((a) => a.name === 'echo-mjs')?.groups.includes('blue'));
  t.pass();
});

brokerTest('a key file that cannot be read is a configuration error (exit 78) naming the key', async (t) => {
  const { url } = await freshVhost(t, 'postaged-signed');
  const r = await postaged(url, ['--plugins', tempDir(t)], { POSTAGE_SIGNING_KEY_FILE: '/nonexistent/control.keys' });
  t.is(r.code, 78);
  t.regex(r.stderr, /security\.signingKeyFile: ENOENT/);
});

peerTest("with signing on, a Python peer's ordinary messages and RPCs are unaffected", async (t) => {
  const name = 'signpy';
  const { vhost } = await signedDaemon(t, name);
  const py = await startPythonClient(t, vhost);
  const r = await py.rpc('echo-mjs/rr', 'echo', { text: 'from python' }, { timeout: 30, maxRetry: 0 });
  t.true(r.ok);
  t.like(r.value as object, { text: 'from python' });
});

/** Runs ./bin/postaged to its exit (for exits at start). */
async function postaged(url: string, args: string[], env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  const { spawn } = await import('node:child_process');
  const { BIN } = await import('../helpers/spawn.js');
  return new Promise((resolve) => {
    const child = spawn(BIN, args, { env: { ...process.env, POSTAGE_URL: url, POSTAGED_LOG_FORMAT: 'json', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('exit', (code) => resolve({ code, stderr }));
  });
}
