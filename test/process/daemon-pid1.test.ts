/**
 * postaged as PID 1 (what it is in a container whose ENTRYPOINT is postaged): a new PID
 * namespace from `unshare --pid --fork --mount-proc` (needs root). SIGTERM gives exit 0,
 * and a restart keeps PID 1 (the container would otherwise end).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import anyTest, { type TestFn } from 'ava';
import { brokerReachable, freshVhost } from '../helpers/broker.js';
import { canUnshare } from '../helpers/proc.js';
import { BIN, controlProducer, DaemonProcess, pluginFolder, ROOT } from '../helpers/spawn.js';
import { waitFor } from '../helpers/wait-for.js';


const usable = brokerReachable && canUnshare();
if (!usable) console.warn('PID 1 tests skipped: needs a reachable broker and `unshare --pid --fork --mount-proc` (root)');
const test: TestFn = usable ? anyTest : (anyTest.skip as unknown as TestFn);

/** The host-side PID of unshare's child (the namespace's PID 1). */
function childOf(pid: number): number | undefined {
  const children = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
  return children ? Number(children.split(' ')[0]) : undefined;
}

test('as PID 1: a restart keeps PID 1, SIGTERM exits 0', async (t) => {
  const { url, connection } = await freshVhost(t, 'postaged-pid1');
  const dir = pluginFolder(t, ['echo-mjs.mjs']);
  const env: NodeJS.ProcessEnv = { ...process.env, POSTAGE_URL: url, POSTAGED_LOG_FORMAT: 'json' };
  delete env['POSTAGED_STATE'];
  const child = spawn('unshare', ['--pid', '--fork', '--mount-proc', BIN, '--plugins', dir, '--host', 'pid1-host'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const daemon = new DaemonProcess(child);
  t.teardown(() => {
    if (!daemon.exit) child.kill('SIGKILL');
    const inner = daemon.exit ? undefined : childOf(child.pid!);
    if (inner) process.kill(inner, 'SIGKILL');
  });
  const ready = await daemon.waitForLine('postaged ready', { timeout: 30_000 });
  t.is(ready['pid'], 1, 'the daemon is PID 1 in its namespace');
  const hostPid = await waitFor('the namespace init', () => childOf(child.pid!));

  await controlProducer(connection).sendCommand('restart', {}, { _key: '1@pid1-host' });
  await daemon.waitForLine('postaged ready', { count: 2, timeout: 20_000 });
  const status = await controlProducer(connection).rpcCommand('status', {}, { _key: 'postaged', _timeout: 5, _max_retry: 0 });
  const value = status.value as { pid: number; generation: number };
  t.is(value.pid, 1, 'still PID 1 after the restart');
  t.is(value.generation, 2);
  t.is(childOf(child.pid!), hostPid, 'the same process, seen from the host');

  // Signals reach a namespace's init only if it handles them: postaged does, from its first line.
  process.kill(hostPid, 'SIGTERM');
  const exit = await daemon.exited;
  t.deepEqual(exit, { code: 0, signal: null }, 'unshare reports the daemon’s exit code');
  t.truthy(daemon.find('stopped')[0]);
});
