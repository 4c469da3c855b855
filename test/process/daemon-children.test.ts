/**
 * Children of postaged across re-execs. A re-exec keeps the PID but replaces the process image:
 * a child still alive at that moment belongs to a process that no longer knows it, and when it
 * exits it stays a zombie for good (as PID 1 of a container nobody else reaps it). The `.ts`
 * plugin loader runs esbuild as a child: this checks that no child of any kind outlives an exec.
 */
import { brokerTest, freshVhost } from '../helpers/broker.js';
import { childrenOf } from '../helpers/proc.js';
import { controlProducer, pluginFolder, startDaemon } from '../helpers/spawn.js';
import { waitFor } from '../helpers/wait-for.js';

brokerTest('three restarts with a .ts plugin leave no child behind: no zombie, no esbuild', async (t) => {
  const { url, connection } = await freshVhost(t, 'postaged-children');
  const dir = pluginFolder(t, ['echo-ts.ts', '_helper.ts', 'echo-mjs.mjs']);
  const daemon = await startDaemon(t, { url, args: ['--plugins', dir, '--host', 'children-host'] });
  // Short-lived children may come and go (and are reaped). A child that the previous image left
  // behind never goes: wait for none.
  const noChildren = async (when: string): Promise<void> => {
    const none = await waitFor('no child process', () => childrenOf(daemon.pid).length === 0, 10_000).then(() => true, () => false);
    t.true(none, `${when}: children left: ${JSON.stringify(childrenOf(daemon.pid))}`);
  };
  await noChildren('once the .ts plugin is loaded');
  for (let n = 1; n <= 3; n++) {
    await controlProducer(connection).sendCommand('restart', { n }, { _key: `${daemon.pid}@children-host` });
    await daemon.waitForLine('postaged ready', { count: n + 1, timeout: 30_000 });
    const reply = await controlProducer(connection).rpcCommand('echo', { text: `gen ${n + 1}` }, { _key: 'echo-ts/rr', _timeout: 5, _max_retry: 0 });
    t.true(reply.ok, `the .ts plugin answers in generation ${n + 1}`);
  }
  await noChildren('after three re-execs (no zombie, no esbuild service)');
  t.is(daemon.find('postaged ready').at(-1)?.['generation'], 4);
  t.deepEqual(await daemon.stop(), { code: 0, signal: null });
});
