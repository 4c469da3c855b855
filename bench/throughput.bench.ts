/**
 * Consumer throughput at prefetch 1, 10 and 100, against the best raw amqplib consumer
 * (issue 14 goal: ≥ 0.90× of it).
 *
 * Each round fills a queue with N Postage `hit` commands through one raw confirm-channel
 * publisher, then one side drains it:
 * - raw, ack each: `ack(msg)` per message;
 * - raw, batched: `ack(last, true)` per event-loop turn or per half prefetch window (the best
 *   raw practice; bench/raw-consumer.ts);
 * - library: a GenericApplication with a trivial `@MessageHandler('command', 'hit')`, in this
 *   process, `prefetch: P`, default concurrency 1;
 * - daemon (prefetch 100 only): the same handler as a plugin in a running `./bin/postaged`
 *   (`POSTAGED_PREFETCH=100`, otherwise its defaults), hot-loaded onto its filled queue.
 * The baseline of a round is the faster of the two raw consumers in that round. Rates are
 * (N - 1) / (last handled - first handled): connection and consumer setup are left out.
 * The order of the sides rotates from round to round.
 *
 * Messages are non-persistent: a persistent message in a durable queue costs the broker a
 * disk write, which would hide the client's own cost, the thing compared.
 */
import amqp, { type ChannelModel } from 'amqplib';
import { Connection, GenericApplication, MessageHandler, MicroScheduler } from 'postage';
import { queueFlags } from 'postage/internal';
import { BenchDaemon } from './bench-daemon.js';
import { DaemonDrainer } from './daemon-drain.js';
import { pairedRow, progress, report, roundOrder, ROUNDS, setting, until, withVhost, type BenchRow } from './helpers.js';
import { DRAIN_TIMEOUT_MS, drainRaw, fill, hitBody, type Drain } from './raw-consumer.js';
import { RawRpcClient } from './raw-rpc.js';

const N = setting('THROUGHPUT_N', 20_000);
/** At prefetch 1 every message waits for a round trip: fewer messages keep the round short. */
const N_PREFETCH_1 = setting('THROUGHPUT_N1', 4_000);
const PREFETCHES = [1, 10, 100] as const;
const DAEMON_PREFETCH = 100;
const APP = 'BenchSink';
const RAW_QUEUE = 'raw-sink';

class BenchSink extends GenericApplication {
  static override appName = APP;
  count = 0;
  first = 0;
  last = 0;

  @MessageHandler('command', 'hit')
  onHit(_content: unknown): void {
    const now = performance.now();
    if (this.count === 0) this.first = now;
    this.last = now;
    this.count++;
  }
}

async function drainLibrary(connection: Connection, n: number, prefetch: number): Promise<Drain> {
  const cpu0 = process.cpuUsage();
  const app = new BenchSink({ connection, prefetch });
  const scheduler = new MicroScheduler();
  scheduler.add(app);
  const done = scheduler.run();
  try {
    await until(`the library to handle ${n} messages`, () => app.stats.handled >= n, DRAIN_TIMEOUT_MS);
  } finally {
    // Not 'quit': that would delete the application's own queue; the shared one stays anyway.
    await app.close('bench round done');
    await done;
  }
  if (app.count !== n) throw new Error(`the library handled ${app.count} messages, expected ${n}`);
  const used = process.cpuUsage(cpu0);
  return { rate: ((n - 1) * 1000) / (app.last - app.first), cpuPerMessage: (used.user + used.system) / n };
}

type Side = 'raw each' | 'raw batched' | 'library' | 'daemon';

await withVhost('postage-bench-throughput', async (url) => {
  const pubConn = await amqp.connect(url, { noDelay: true });
  const rawConn: ChannelModel = await amqp.connect(url, { noDelay: true });
  const connection = new Connection({ url, clientName: 'bench throughput (postage)' });
  const daemon = BenchDaemon.spawn({ url, env: { POSTAGED_PREFETCH: String(DAEMON_PREFETCH) } });
  let client: RawRpcClient | undefined;
  try {
    const pub = await pubConn.createConfirmChannel();
    // The application's shared queue, declared ahead with the flags the application uses,
    // so it can be filled before the application starts; the raw queue gets the same flags.
    const flags = queueFlags('shared', APP) ?? {};
    await pub.assertQueue(APP, flags);
    await pub.assertQueue(RAW_QUEUE, flags);
    const content = hitBody();
    await daemon.ready();
    client = await RawRpcClient.open(pubConn);
    const drainer = new DaemonDrainer(daemon, pub, client, 'mjs');

    const round = async (side: Side, n: number, prefetch: number): Promise<Drain> => {
      if (side === 'daemon') return drainer.drain(n);
      const queue = side === 'library' ? APP : RAW_QUEUE;
      await fill(pub, queue, n, content);
      const drain = side === 'library' ? await drainLibrary(connection, n, prefetch) : await drainRaw(rawConn, queue, n, prefetch, side === 'raw each' ? 'each' : 'batched');
      const { messageCount } = await pub.checkQueue(queue);
      if (messageCount !== 0) throw new Error(`${side}: ${messageCount} messages left in ${queue} after the round`);
      return drain;
    };

    const rows: BenchRow[] = [];
    for (const prefetch of PREFETCHES) {
      const n = prefetch === 1 ? N_PREFETCH_1 : N;
      const sides: Side[] = prefetch === DAEMON_PREFETCH ? ['raw each', 'raw batched', 'library', 'daemon'] : ['raw each', 'raw batched', 'library'];
      progress(`prefetch ${prefetch}: warm-up (${n / 10} messages per side)`);
      for (const side of sides) await round(side, n / 10, prefetch);
      const rate: Record<Side, number[]> = { 'raw each': [], 'raw batched': [], library: [], daemon: [] };
      const cpu: Record<Side, number[]> = { 'raw each': [], 'raw batched': [], library: [], daemon: [] };
      for (let r = 0; r < ROUNDS; r++) {
        for (const side of roundOrder(sides, r)) {
          const d = await round(side, n, prefetch);
          rate[side].push(d.rate);
          cpu[side].push(d.cpuPerMessage);
        }
        progress(`prefetch ${prefetch}, round ${r + 1}/${ROUNDS}: ${sides.map((s) => `${s} ${Math.round(rate[s].at(-1) ?? 0)} msg/s`).join(', ')}`);
      }
      // The baseline of each round: whichever raw consumer was faster in that round.
      const bestIsBatched = rate['raw each'].map((each, i) => (rate['raw batched'][i] as number) >= each);
      const best = bestIsBatched.map((b, i) => (b ? rate['raw batched'][i] : rate['raw each'][i]) as number);
      const bestCpu = bestIsBatched.map((b, i) => (b ? cpu['raw batched'][i] : cpu['raw each'][i]) as number);
      const batchedWins = bestIsBatched.filter(Boolean).length;
      const bestName = `best raw amqplib (batched acks faster in ${batchedWins}/${ROUNDS} rounds)`;
      const goal = { of: 'ratio', op: '>=', value: 0.9 } as const;
      rows.push(
        pairedRow({ metric: `consume ${n} msgs, prefetch ${prefetch}, library`, unit: 'msg/s', baselineName: bestName, baseline: best, ours: rate.library, goal, note: 'GenericApplication + MessageHandler in process, concurrency 1' }),
        pairedRow({ metric: `consume, prefetch ${prefetch}, library vs raw ack-each`, unit: 'msg/s', baselineName: 'raw amqplib, ack each', baseline: rate['raw each'], ours: rate.library, note: 'diagnostic: the baseline of the first benchmarks' }),
        pairedRow({ metric: `consume, prefetch ${prefetch}, raw batched vs raw ack-each`, unit: 'msg/s', baselineName: 'raw amqplib, ack each', baseline: rate['raw each'], ours: rate['raw batched'], note: 'diagnostic: what batching acks buys raw amqplib (ours = raw batched)' }),
        pairedRow({ metric: `consumer CPU per message, prefetch ${prefetch}, library`, unit: 'µs', baselineName: 'best raw amqplib', baseline: bestCpu, ours: cpu.library, note: 'diagnostic: CPU of the consuming process' }),
      );
      if (sides.includes('daemon')) {
        rows.push(
          pairedRow({ metric: `consume ${n} msgs, prefetch ${prefetch}, daemon plugin`, unit: 'msg/s', baselineName: bestName, baseline: best, ours: rate.daemon, goal, note: `a plugin in ./bin/postaged (POSTAGED_PREFETCH=${DAEMON_PREFETCH}, else defaults)` }),
          pairedRow({ metric: `consumer CPU per message, prefetch ${prefetch}, daemon plugin`, unit: 'µs', baselineName: 'best raw amqplib', baseline: bestCpu, ours: cpu.daemon, note: 'diagnostic: CPU of the daemon process from the first message on' }),
        );
      }
    }
    report('throughput', rows, { messages: N, messagesAtPrefetch1: N_PREFETCH_1, rounds: ROUNDS, messageBytes: content.length });
  } finally {
    await client?.close();
    await daemon.stop();
    await connection.close('bench done');
    await rawConn.close().catch(() => undefined);
    await pubConn.close().catch(() => undefined);
  }
});
