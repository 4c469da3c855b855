/**
 * Issue 11, item 2: `restart` and `quit` from Python. Python sends no message_id and the
 * same body every time, so a command's identity cannot be a hash of its body: a restart
 * sent twice must be obeyed twice, and one sent once obeyed once whatever key it used
 * (N, N@H, P@H, @H, N:P@H); only P@H and @H reach several applications of one process.
 *
 * Exactly once is decided from what the delivery says: a plugin leaves P@H and @H to the
 * daemon's own application (which gets a copy of both), a `message_id` already acted on is
 * not acted on again, and the application that acts takes no further message, so a second
 * restart waits in its queue for the next generation. The restart tests run one at a time:
 * each counts the re-execs of its own daemon, and several daemons re-exec'ing at once would
 * only slow each other down.
 */
import type { ExecutionContext } from 'ava';
import { GenericApplicationExchange, GenericProducer, type Connection, type DaemonStatus } from 'postage';
import { freshVhost } from '../helpers/broker.js';
import { pluginCopies } from '../helpers/interop-apps.js';
import { postage } from '../helpers/postage-cli.js';
import { peerTest, startPythonApp, startPythonClient, type PythonClient } from '../helpers/python-peer.js';
import { controlProducer, startDaemon, type DaemonProcess } from '../helpers/spawn.js';
import { waitFor } from '../helpers/wait-for.js';

const PLUGINS = ['alpha', 'beta'];

interface Fleet {
  daemon: DaemonProcess;
  py: PythonClient;
  connection: Connection;
  host: string;
  /** `P@H` of the daemon. */
  pkey: string;
}

async function fleet(t: ExecutionContext, plugins = PLUGINS): Promise<Fleet> {
  const { vhost, url, connection } = await freshVhost(t, 'interop-control');
  const host = `ctl-${Math.random().toString(36).slice(2, 8)}`;
  const daemon = await startDaemon(t, { url, args: ['--plugins', pluginCopies(t, 'interop.mjs', plugins), '--no-watch'], env: { POSTAGE_HOSTNAME: host } });
  const py = await startPythonClient(t, vhost);
  return { daemon, py, connection, host, pkey: `${daemon.pid}@${host}` };
}

/** RPC `status` on the daemon's own queue: handled after every command queued there before it. */
async function status(f: Fleet): Promise<DaemonStatus> {
  const r = await controlProducer(f.connection).rpcCommand('status', {}, { _key: `postaged:${f.pkey}`, _timeout: 30, _max_retry: 0 });
  if (!r.ok) throw new Error(`status: ${r.message}`);
  return r.value as DaemonStatus;
}

/**
 * Waits until every copy of the commands sent so far has been handled: a `ping` on each
 * application's own queue is answered only after what was queued before it, and a final
 * `status` (handled by the next generation if any copy started a restart) tells the generation.
 */
async function settled(f: Fleet, apps: readonly string[]): Promise<DaemonStatus> {
  const control = controlProducer(f.connection);
  for (const app of apps) {
    const r = await control.rpcCommand('ping', {}, { _key: `${app}:${f.pkey}`, _timeout: 30, _max_retry: 0 });
    if (!r.ok) throw new Error(`ping ${app}: ${r.message}`);
  }
  return status(f);
}

/** The daemon's exit, or a failure naming what it last logged if it is still running after `ms`. */
async function exitOf(daemon: DaemonProcess, ms = 30_000): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise((resolve) => {
    timer = setTimeout(() => resolve(`still running after ${ms} ms; last lines:\n${daemon.tail()}`), ms);
  });
  const exit = await Promise.race([daemon.exited, late]);
  clearTimeout(timer);
  return exit;
}

const ready = (f: Fleet, generation: number): Promise<unknown> => f.daemon.waitForLine((l) => l.message === 'postaged ready' && l['generation'] === generation, { timeout: 30_000 });

for (const [label, key] of [
  ['N', (_f: Fleet) => 'alpha'],
  ['N@H', (f: Fleet) => `alpha@${f.host}`],
  ['N:P@H', (f: Fleet) => `alpha:${f.pkey}`],
  ['P@H', (f: Fleet) => f.pkey],
  ['@H', (f: Fleet) => `@${f.host}`],
  ["the daemon's name", (_f: Fleet) => 'postaged'],
] as const) {
  peerTest.serial(`a restart sent once by Python to ${label} re-execs the daemon exactly once`, async (t) => {
    const f = await fleet(t);
    await f.py.send(key(f), 'restart');
    await ready(f, 2);
    const s = await settled(f, ['postaged', ...PLUGINS]);
    t.is(s.generation, 2);
    t.is(s.pid, f.daemon.pid);
    t.is(f.daemon.find('re-exec').length, 1, 'one re-exec');
    t.is(s.applications.filter((a) => a.state === 'running').length, 1 + PLUGINS.length);
  });
}

/**
 * Sends `restart` twice in a row (as a Python script calling message_restart() twice would)
 * and returns the daemon's status once both have been handled. The second copy waits in
 * the queue while the first one restarts the daemon (the application that acted takes
 * nothing more), and the next generation obeys it.
 */
async function restartTwice(t: ExecutionContext, f: Fleet, key: string, apps: readonly string[]): Promise<DaemonStatus> {
  const t0 = Date.now();
  await f.py.send(key, 'restart');
  await f.py.send(key, 'restart');
  // Generation 2 may restart again before it is ready (the second restart waits in the queue
  // of an application that starts before the others): wait for the third.
  await ready(f, 3);
  t.log(`generation 3 ready ${Date.now() - t0} ms after the first restart was sent`);
  return settled(f, apps);
}

// Issue 11 item 2: Python's restart bodies are identical; the second one must be obeyed too.
peerTest.serial('a restart sent twice by Python to a plugin (N) is obeyed twice', async (t) => {
  const f = await fleet(t);
  const s = await restartTwice(t, f, 'alpha', ['alpha']);
  t.is(s.generation, 3, `the second restart was obeyed (log: ${f.daemon.find('restart command already acted on: ignored').length} 'ignored' line(s))`);
  t.is(f.daemon.find('re-exec').length, 2);
});

// Issue 11 item 2: the same with P@H, which reaches every application of the daemon: obeyed twice, once each.
peerTest.serial('a restart sent twice by Python to P@H is obeyed twice, once each', async (t) => {
  const f = await fleet(t);
  const s = await restartTwice(t, f, f.pkey, ['postaged', ...PLUGINS]);
  t.is(s.generation, 3, 'the second restart was obeyed');
  t.is(f.daemon.find('re-exec').length, 2, 'and each exactly once');
});

peerTest('quit sent by Python with identical bodies to N, N@H and N:P@H stops each application; P@H then stops the daemon', async (t) => {
  const f = await fleet(t, ['alpha', 'beta', 'gamma']);
  const stateOf = async (name: string): Promise<string | undefined> => (await status(f)).applications.find((a) => a.name === name)?.state;
  await f.py.send('alpha', 'quit');
  await waitFor('alpha stopped', async () => (await stateOf('alpha')) === 'stopped');
  await f.py.send(`beta@${f.host}`, 'quit');
  await waitFor('beta stopped', async () => (await stateOf('beta')) === 'stopped');
  await f.py.send(`gamma:${f.pkey}`, 'quit');
  await waitFor('gamma stopped', async () => (await stateOf('gamma')) === 'stopped');
  const s = await status(f);
  t.is(s.applications.find((a) => a.name === 'postaged')?.state, 'running', 'quitting applications leaves the daemon running');
  t.is(f.daemon.exit, undefined);
  await f.py.send(f.pkey, 'quit');
  t.deepEqual(await exitOf(f.daemon), { code: 0, signal: null });
});

for (const [label, key] of [
  ['@H', (f: Fleet) => `@${f.host}`],
  ["the daemon's name", (_f: Fleet) => 'postaged'],
] as const) {
  peerTest(`quit sent by Python to ${label} stops the whole daemon (exit 0)`, async (t) => {
    const f = await fleet(t);
    await f.py.send(key(f), 'quit');
    t.deepEqual(await exitOf(f.daemon), { code: 0, signal: null });
  });
}

peerTest('commands sent by the library producer carry a message_id, one per send', async (t) => {
  const { vhost, connection } = await freshVhost(t, 'interop-control');
  const py = await startPythonApp(t, vhost, { name: 'py-probe' });
  class P extends GenericProducer {
    static override eks = [[GenericApplicationExchange, 'py-probe']] as const;
  }
  const p = new P({ connection });
  await p.sendCommand('echo', 1);
  await p.sendCommand('echo', 1);
  await py.waitForEvent('echo', { count: 2 });
  const ids = py.deliveries('echo').map((d) => (d['properties'] as Record<string, unknown>)['message_id']);
  t.is(ids.length, 2);
  t.true(ids.every((id) => typeof id === 'string' && id !== ''), JSON.stringify(ids));
  t.not(ids[0], ids[1]);
});

// Issue 11 item 2: "The CLI and producer still set message_id" — the CLI's commands have none today.
peerTest('commands sent by the CLI (send, join, restart) carry a message_id', async (t) => {
  const { vhost, url } = await freshVhost(t, 'interop-control');
  const py = await startPythonApp(t, vhost, { name: 'py-probe' });
  t.is((await postage(url, ['send', 'py-probe', 'echo', '1'])).code, 0);
  t.is((await postage(url, ['join', 'py-probe', 'blue'])).code, 0);
  t.is((await postage(url, ['restart', py.uniqueKey])).code, 0);
  await py.waitForEvent((e) => e.event === 'ready' && e['generation'] === 2);
  const props = ['echo', 'join_group', 'restart'].map((name) => py.deliveries(name)[0]?.['properties'] as Record<string, unknown> | undefined);
  t.log(JSON.stringify(props));
  for (const p of props) t.true(typeof p?.['message_id'] === 'string' && p['message_id'] !== '', `message_id in ${JSON.stringify(p)}`);
});
