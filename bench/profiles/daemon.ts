/**
 * Profiles of a real `./bin/postaged` (V8's `--cpu-prof` / `--heap-prof` as node flags; the
 * profile is written when the daemon exits):
 *
 * - `consume N`: drains N `hit` commands through a plugin hot-loaded onto its filled queue
 *   (POSTAGED_PREFETCH as in the environment, else the daemon's default); the profile covers
 *   the daemon's start too, a small share next to the drain.
 * - `rpc N`: N sequential RPC `echo` calls from a raw amqplib client to a plugin.
 * - `start K`: K `.ts` plugins. A first, unprofiled daemon declares every queue and stops;
 *   then a profiled one starts on the same plugins and is stopped a second after every plugin
 *   answers: its profile is what a restarted generation does (boot, imports, config, connect,
 *   declarations of queues that exist, plugin loads) plus a second of idle; its heap profile
 *   is what it holds when idle. (A re-exec'd generation itself cannot be CPU-profiled: the
 *   profiler's SIGPROF interval timer survives execve and kills the new image before Node
 *   installs its handler.)
 *
 * Usage: node dist/bench/profiles/daemon.js OUT_DIR consume|rpc|start COUNT [cpu|heap]
 */
import fs from 'node:fs';
import path from 'node:path';
import amqp from 'amqplib';
import { GenericApplicationExchange } from 'postage';
import { BenchDaemon } from '../bench-daemon.js';
import { benchPlugin } from '../bench-plugins.js';
import { DaemonDrainer, waitForStats } from '../daemon-drain.js';
import { progress, sleep, withVhost } from '../helpers.js';
import { RawRpcClient, rpcBody } from '../raw-rpc.js';

const [outArg = '.', mode = 'consume', countArg, kind = 'cpu'] = process.argv.slice(2);
const outDir = path.resolve(outArg);
const count = Number(countArg ?? 100_000);
const GAE = GenericApplicationExchange.name;
const nodeArgs = kind === 'heap' ? ['--heap-prof', `--heap-prof-dir=${outDir}`, '--heap-prof-interval=8192'] : ['--cpu-prof', `--cpu-prof-dir=${outDir}`, '--cpu-prof-interval=100'];

fs.mkdirSync(outDir, { recursive: true });
await withVhost('postage-profile-daemon', async (url) => {
  const conn = await amqp.connect(url, { noDelay: true });
  const client = await RawRpcClient.open(conn);
  const plugins: Record<string, string> = {};
  if (mode === 'start') for (let i = 1; i <= count; i++) plugins[`p${i}.ts`] = benchPlugin(`p${i}`, 'ts');
  if (mode === 'rpc') plugins['echo.mjs'] = benchPlugin('echo', 'mjs');
  const names = Object.keys(plugins).map((f) => path.basename(f, path.extname(f)));
  if (mode === 'start') {
    const first = await BenchDaemon.spawn({ url, nodeArgs: [] }, plugins).ready();
    await Promise.all(names.map((n) => waitForStats(client, n, () => true, 60_000)));
    await first.stop();
  }
  const t0 = performance.now();
  const daemon = BenchDaemon.spawn({ url, nodeArgs }, plugins);
  try {
    await daemon.ready();
    if (mode === 'consume') {
      const drainer = new DaemonDrainer(daemon, await conn.createConfirmChannel(), client, 'mjs');
      await drainer.drain(count / 10);
      const d = await drainer.drain(count);
      progress(`daemon drained ${count} at ${Math.round(d.rate)} msg/s, ${d.cpuPerMessage.toFixed(1)} µs CPU/msg`);
    } else if (mode === 'rpc') {
      await waitForStats(client, 'echo', () => true, 30_000);
      const body = rpcBody('echo', { n: 1 });
      const t1 = performance.now();
      for (let i = 0; i < count; i++) await client.call(GAE, 'echo/rr', body);
      progress(`${count} calls at ${Math.round((count * 1000) / (performance.now() - t1))} calls/s`);
    } else {
      await Promise.all(names.map((n) => waitForStats(client, n, () => true, 60_000, 5)));
      progress(`start with ${count} plugins: every plugin answered ${(performance.now() - t0).toFixed(0)} ms after spawn`);
      await sleep(1000);
      progress(`idle RSS ${(daemon.rss() / 2 ** 20).toFixed(1)} MiB`);
    }
  } finally {
    await daemon.stop();
    await client.close();
    await conn.close().catch(() => undefined);
  }
  const written = fs.readdirSync(outDir).filter((f) => f.endsWith(kind === 'heap' ? '.heapprofile' : '.cpuprofile'));
  progress(`profiles in ${outDir}: ${written.join(', ')}`);
});
