/**
 * Profiles of the consume path: the library consumer (a GenericApplication with a trivial
 * MessageHandler, in process) and the best raw amqplib consumer (batched acks), each draining
 * the same number of messages at the same prefetch, once under the CPU profiler and once
 * under the allocation sampler, so that the profiles can be set side by side.
 *
 * Usage: node dist/bench/profiles/consume.js OUT_DIR [messages = 100000] [prefetch = 100]
 * Writes OUT_DIR/consume-{library,raw}.{cpuprofile,heapprofile}; read them with
 * `node dist/bench/profile-summary.js FILE 30 dist/lib MESSAGES`.
 */
import path from 'node:path';
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import { Connection, GenericApplication, MessageHandler, MicroScheduler } from 'postage';
import { queueFlags } from 'postage/internal';
import { progress, until, withVhost } from '../helpers.js';
import { drainRaw, fill, hitBody } from '../raw-consumer.js';
import { AllocationSampler, CpuProfiler } from './cpu-profiler.js';

const [outDir = '.', nArg, prefetchArg] = process.argv.slice(2);
const N = Number(nArg ?? 100_000);
const PREFETCH = Number(prefetchArg ?? 100);
const APP = 'ProfiledSink';

class ProfiledSink extends GenericApplication {
  static override appName = APP;
  count = 0;

  @MessageHandler('command', 'hit')
  onHit(_content: unknown): void {
    this.count++;
  }
}

type Profiler = CpuProfiler | AllocationSampler;

/** Drains `n` messages with the library; the profiler runs from the first delivery on. */
async function drainLibrary(connection: Connection, n: number, profiler?: Profiler, file?: string): Promise<void> {
  const app = new ProfiledSink({ connection, prefetch: PREFETCH });
  const scheduler = new MicroScheduler();
  scheduler.add(app);
  const done = scheduler.run();
  await until('the first message', () => app.count >= 1, 60_000, 1);
  await profiler?.start();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await until('the library drain', () => app.count >= n, 300_000, 2);
  const ms = performance.now() - t0;
  const used = process.cpuUsage(cpu0);
  if (profiler && file) await profiler.stop(file);
  progress(`library${file ? ` (${path.basename(file)})` : ''}: ${Math.round(((n - 1) * 1000) / ms)} msg/s, ${((used.user + used.system) / (n - 1)).toFixed(1)} µs CPU/msg`);
  await app.close('profile done');
  await done;
}

async function drainRawProfiled(conn: ChannelModel, n: number, profiler: Profiler, file: string): Promise<void> {
  await profiler.start();
  const d = await drainRaw(conn, 'raw', n, PREFETCH, 'batched');
  await profiler.stop(file);
  progress(`raw batched (${path.basename(file)}): ${Math.round(d.rate)} msg/s, ${d.cpuPerMessage.toFixed(1)} µs CPU/msg`);
}

await withVhost('postage-profile-consume', async (url) => {
  const conn = await amqp.connect(url, { noDelay: true });
  const connection = new Connection({ url, clientName: 'profile consume' });
  try {
    const pub: ConfirmChannel = await conn.createConfirmChannel();
    const flags = queueFlags('shared', APP) ?? {};
    await pub.assertQueue(APP, flags);
    await pub.assertQueue('raw', flags);
    const content = hitBody();

    // Warm-up of both paths, unprofiled.
    await fill(pub, 'raw', N / 10, content);
    await drainRaw(conn, 'raw', N / 10, PREFETCH, 'batched');
    await fill(pub, APP, N / 10, content);
    await drainLibrary(connection, N / 10);

    for (const [kind, make] of [
      ['cpuprofile', () => new CpuProfiler()],
      ['heapprofile', () => new AllocationSampler()],
    ] as const) {
      await fill(pub, 'raw', N, content);
      await drainRawProfiled(conn, N, make(), path.join(outDir, `consume-raw.${kind}`));
      await fill(pub, APP, N, content);
      await drainLibrary(connection, N, make(), path.join(outDir, `consume-library.${kind}`));
    }
  } finally {
    await connection.close('profile done');
    await conn.close().catch(() => undefined);
  }
});
