/**
 * Consuming through a running daemon: each drain fills the shared queue of a plugin that
 * does not run yet, then drops the plugin file into the daemon's folder (hot-load), so the
 * plugin starts on a full queue as the in-process consumers do. The rate comes from the
 * plugin's own first/last handling times (bench/bench-plugins.ts), so loading the file and
 * starting the consumer are left out. The plugin file is removed afterwards (the
 * application quits), so the daemon does not grow from round to round.
 */
import type { ConfirmChannel } from 'amqplib';
import { GenericApplicationExchange } from 'postage';
import { queueFlags } from 'postage/internal';
import type { BenchDaemon } from './bench-daemon.js';
import { benchPlugin, type PluginExt, type SinkStats } from './bench-plugins.js';
import { sleep } from './helpers.js';
import { DRAIN_TIMEOUT_MS, fill, hitBody, type Drain } from './raw-consumer.js';
import { rpcBody, Unroutable, type RawRpcClient } from './raw-rpc.js';

/**
 * Polls `bench_stats` of application `name` until `done(stats)`; an application not bound
 * yet (the request comes back unroutable) is polled again.
 */
export async function waitForStats(client: RawRpcClient, name: string, done: (s: SinkStats) => boolean, timeoutMs = DRAIN_TIMEOUT_MS, everyMs = 50): Promise<SinkStats> {
  const deadline = Date.now() + timeoutMs;
  const request = rpcBody('bench_stats');
  for (;;) {
    try {
      const stats = await client.value<SinkStats>(GenericApplicationExchange.name, name, request, { mandatory: true, timeoutMs: 10_000 });
      if (done(stats)) return stats;
    } catch (err) {
      if (!(err instanceof Unroutable)) throw err;
    }
    if (Date.now() > deadline) throw new Error(`${name} did not finish within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

export class DaemonDrainer {
  private k = 0;
  private readonly content = hitBody();

  constructor(
    private readonly daemon: BenchDaemon,
    private readonly pub: ConfirmChannel,
    private readonly client: RawRpcClient,
    private readonly ext: PluginExt,
    private readonly prefix = 'sink',
  ) {}

  async drain(n: number): Promise<Drain> {
    const name = `${this.prefix}-${++this.k}`;
    await this.pub.assertQueue(name, queueFlags('shared', name) ?? {});
    await fill(this.pub, name, n, this.content);
    const file = `${name}.${this.ext}`;
    this.daemon.write(file, benchPlugin(name, this.ext));
    const stats = await waitForStats(this.client, name, (s) => s.count >= n);
    this.daemon.remove(file);
    if (stats.count !== n) throw new Error(`${name} handled ${stats.count} messages, expected ${n}`);
    return { rate: ((n - 1) * 1000) / (stats.last - stats.first), cpuPerMessage: stats.cpu / n };
  }
}
