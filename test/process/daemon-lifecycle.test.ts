/**
 * postaged's quit and signals, and the shape of its `status`, with the real binary.
 */
import os from 'node:os';
import type { Connection, MessageResult } from 'postage';
import { brokerTest, freshVhost, listQueues } from '../helpers/broker.js';
import { controlProducer, pluginFolder, processKey, startDaemon } from '../helpers/spawn.js';
import { waitFor } from '../helpers/wait-for.js';

async function rpc(connection: Connection, key: string, command: string, parameters: unknown = {}, timeout = 5): Promise<MessageResult> {
  return controlProducer(connection).rpcCommand(command, parameters, { _key: key, _timeout: timeout, _max_retry: 0 });
}

brokerTest('quit to one application leaves the others serving; quit to the daemon exits 0', async (t) => {
  const { url, vhost, connection } = await freshVhost(t, 'postaged-quit');
  const dir = pluginFolder(t, ['echo-mjs.mjs', 'echo-cjs.cjs']);
  const daemon = await startDaemon(t, { url, args: ['--plugins', dir] });
  const uid = `echo-cjs:${processKey(daemon)}`;
  t.true((await listQueues(vhost)).some((q) => q.name === uid));

  await controlProducer(connection).sendCommand('quit', {}, { _key: 'echo-cjs' });
  await daemon.waitForLine((l) => l.message === 'application stopped' && l.app === 'echo-cjs');
  await waitFor('echo-cjs unique queue deleted', async () => !(await listQueues(vhost)).some((q) => q.name === uid));
  const status = (await rpc(connection, 'postaged', 'status')).value as { applications: Array<{ name: string; state: string }> };
  t.is(status.applications.find((a) => a.name === 'echo-cjs')?.state, 'stopped');
  t.true((await rpc(connection, 'echo-mjs/rr', 'echo', { text: 'x' })).ok, 'the other plugin still answers');

  await controlProducer(connection).sendCommand('quit', {}, { _key: 'postaged' });
  const exit = await daemon.exited;
  t.deepEqual(exit, { code: 0, signal: null });
  t.truthy(daemon.find('stopped')[0], 'logged its stop');
});

brokerTest('quit to P@H stops every application and exits 0', async (t) => {
  const { url, connection } = await freshVhost(t, 'postaged-quit-all');
  const dir = pluginFolder(t, ['echo-mjs.mjs', 'echo-cjs.cjs']);
  const daemon = await startDaemon(t, { url, args: ['--plugins', dir] });
  await controlProducer(connection).sendCommand('quit', {}, { _key: processKey(daemon) });
  t.deepEqual(await daemon.exited, { code: 0, signal: null });
  t.is(daemon.find((l) => l.message === 'application stopped').length, 3);
});

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  brokerTest(`${signal} during a slow handler lets it finish and ack before exit 0`, async (t) => {
    const { url, vhost, connection } = await freshVhost(t, `postaged-${signal.toLowerCase()}`);
    const dir = pluginFolder(t, ['slow.mjs']);
    const daemon = await startDaemon(t, { url, args: ['--plugins', dir] });
    await controlProducer(connection).sendCommand('slow', { ms: 1500, id: 'one' }, { _key: 'slow/rr' });
    await daemon.waitForLine((l) => l.message === 'slow started');
    const t0 = performance.now();
    daemon.signal(signal);
    const exit = await daemon.exited;
    t.log(`${signal} -> exit after ${(performance.now() - t0).toFixed(0)} ms`);
    t.deepEqual(exit, { code: 0, signal: null });
    const done = daemon.find('slow done');
    t.is(done.length, 1, 'the handler finished');
    const stopped = daemon.find('stopped').at(-1)!;
    t.true(daemon.lines.indexOf(done[0]!) < daemon.lines.indexOf(stopped), 'before the daemon stopped');
    const shared = (await listQueues(vhost)).find((q) => q.name === 'slow');
    t.is(shared?.messages, 0, 'the message was acked, not requeued');
  });
}

brokerTest('a second SIGTERM forces the exit (1), naming what is still open', async (t) => {
  const { url, connection } = await freshVhost(t, 'postaged-force');
  const dir = pluginFolder(t, ['slow.mjs']);
  const daemon = await startDaemon(t, { url, args: ['--plugins', dir, '--drain-timeout', '20000'], env: { POSTAGED_SHUTDOWN_TIMEOUT: '30000' } });
  await controlProducer(connection).sendCommand('slow', { ms: 15_000, id: 'long' }, { _key: 'slow/rr' });
  await daemon.waitForLine((l) => l.message === 'slow started');
  daemon.signal('SIGTERM');
  await daemon.waitForLine('stopping');
  daemon.signal('SIGTERM');
  const exit = await daemon.exited;
  t.deepEqual(exit, { code: 1, signal: null });
  t.regex(daemon.stderr, /second signal \(SIGTERM\): forcing exit; still open: .*slow \(stopping, 1 handler\(s\) in flight\)/);
});

brokerTest('the shutdown watchdog exits 1 and names what is still open instead of hanging', async (t) => {
  const { url } = await freshVhost(t, 'postaged-watchdog');
  const dir = pluginFolder(t, ['hangs-on-close.mjs', 'echo-mjs.mjs']);
  const daemon = await startDaemon(t, { url, args: ['--plugins', dir, '--drain-timeout', '500'], env: { POSTAGED_SHUTDOWN_TIMEOUT: '1500' } });
  const t0 = performance.now();
  daemon.signal('SIGTERM');
  const exit = await daemon.exited;
  t.log(`watchdog exit after ${(performance.now() - t0).toFixed(0)} ms`);
  t.deepEqual(exit, { code: 1, signal: null });
  const line = daemon.find((l) => /stop did not finish within 1500 ms/.test(l.message))[0];
  t.truthy(line, 'the watchdog logged');
  t.regex(JSON.stringify(line?.['open']), /hangs-on-close \(stopping, 0 handler\(s\) in flight\)/, 'naming the application still open');
});

brokerTest('status returns every field, with the right types', async (t) => {
  const { url, connection } = await freshVhost(t, 'postaged-status');
  const dir = pluginFolder(t, ['echo-ts.ts', '_helper.ts', 'bad-export.mjs']);
  const daemon = await startDaemon(t, {
    url,
    args: ['--plugins', dir, '--name', 'statusd', '--host', 'status-host'],
    env: { POSTAGED_APPS: undefined },
  });
  await rpc(connection, 'echo-ts/rr', 'echo', { text: 'count me' });
  const result = await rpc(connection, 'statusd', 'status');
  t.true(result.ok);
  const s = result.value as Record<string, unknown>;
  t.deepEqual(Object.keys(s).sort(), ['applications', 'broker', 'cpu', 'eventLoop', 'generation', 'host', 'lastRestartReason', 'memory', 'name', 'pid', 'pluginDir', 'restarts', 'startedAt', 'uptime', 'version'].sort());
  t.like(s['broker'], { state: 'connected', blocked: false, connections: 1 });
  t.regex(String((s['broker'] as { url: string }).url), /^amqp:\/\/guest@127\.0\.0\.1:5672\//, 'the node in use, without a password');
  t.true(typeof (s['eventLoop'] as { maxLagMs: number }).maxLagMs === 'number');
  t.is(s['name'], 'statusd');
  t.is(s['pid'], daemon.pid);
  t.is(s['host'], 'status-host');
  t.regex(String(s['version']), /^\d+\.\d+\.\d+/);
  t.true(typeof s['uptime'] === 'number' && (s['uptime'] as number) >= 0);
  t.is(s['generation'], 1);
  t.is(s['restarts'], 0);
  t.is(s['lastRestartReason'], null);
  t.false(Number.isNaN(Date.parse(String(s['startedAt']))));
  t.true(typeof s['cpu'] === 'number' && (s['cpu'] as number) >= 0);
  t.true(typeof s['memory'] === 'number' && (s['memory'] as number) > 10 * 1024 * 1024, 'RSS in bytes');
  t.is(s['pluginDir'], dir);
  const apps = s['applications'] as Array<Record<string, unknown>>;
  const own = apps.find((a) => a['name'] === 'statusd')!;
  t.deepEqual(Object.keys(own).sort(), ['counts', 'file', 'groups', 'invalid', 'name', 'queues', 'refused', 'state']);
  t.is(own['file'], null);
  t.is(own['state'], 'running');
  t.deepEqual(own['queues'], ['statusd', 'statusd@status-host', `statusd:${daemon.pid}@status-host`]);
  const echo = apps.find((a) => a['name'] === 'echo-ts')!;
  t.deepEqual(echo['counts'], { received: 1, handled: 1, failed: 0, rejected: 0, deadLettered: 0, unhandled: 0, retried: 0, timedOut: 0, duplicates: 0 });
  t.deepEqual(echo['groups'], []);
  const bad = apps.find((a) => a['name'] === 'bad-export')!;
  t.is(bad['state'], 'failed');
  t.is(typeof bad['error'], 'string');
  t.not(os.hostname(), 'status-host');
});

brokerTest('per-application config: groups, settings and enabled', async (t) => {
  const { url, connection } = await freshVhost(t, 'postaged-appcfg');
  const dir = pluginFolder(t, ['echo-ts.ts', '_helper.ts', 'echo-mjs.mjs']);
  const config = `${dir}/../postaged.json`;
  const fs = await import('node:fs');
  fs.writeFileSync(
    config,
    JSON.stringify({ apps: { 'echo-ts': { groups: ['blue'], settings: { greeting: 'hi' } }, 'echo-mjs': { enabled: false } } }),
  );
  await startDaemon(t, { url, args: ['--plugins', dir, '--config', config] });
  const identity = (await rpc(connection, 'echo-ts#blue', 'identity')).value as { settings: unknown; groups: unknown };
  t.deepEqual(identity.settings, { greeting: 'hi' });
  t.deepEqual(identity.groups, ['blue']);
  const s = (await rpc(connection, 'postaged', 'status')).value as { applications: Array<{ name: string; state: string; groups: string[] }> };
  t.is(s.applications.find((a) => a.name === 'echo-mjs')?.state, 'stopped', 'disabled');
  t.deepEqual(s.applications.find((a) => a.name === 'echo-ts')?.groups, ['blue']);
});

brokerTest('SIGHUP (systemctl reload) restarts in place when not on a terminal', async (t) => {
  const { url, connection } = await freshVhost(t, 'postaged-sighup');
  const dir = pluginFolder(t, ['echo-mjs.mjs']);
  const daemon = await startDaemon(t, { url, args: ['--plugins', dir] });
  daemon.signal('SIGHUP');
  await daemon.waitForLine('postaged ready', { count: 2, timeout: 20_000 });
  const s = (await rpc(connection, 'postaged', 'status')).value as { pid: number; generation: number; lastRestartReason: string };
  t.is(s.pid, daemon.pid);
  t.is(s.generation, 2);
  t.is(s.lastRestartReason, 'SIGHUP');
  t.is(daemon.exit, undefined);
});
