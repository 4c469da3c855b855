/**
 * Consumer throughput at prefetch 100 (SPEC §8 target: postage ≥ 0.9× raw amqplib).
 *
 * Each round fills a queue with N Postage `hit` commands through one raw confirm-channel
 * publisher, then drains it either with a raw amqplib consumer (prefetch 100, ack each)
 * or with a GenericApplication whose trivial MessageHandler counts (prefetch 100). The
 * rate is (N - 1) / (time of the last handled message - time of the first), so connection
 * and consumer setup are left out on both sides. Rounds alternate raw/postage as ABBA so
 * drift of the machine weighs on both sides alike.
 *
 * Messages are published non-persistent: a persistent message in a durable queue costs
 * the broker a disk write, which would hide the client's own cost, the thing compared.
 */
import amqp, { type Channel, type ChannelModel, type ConfirmChannel } from 'amqplib';
import { Connection, GenericApplication, MessageCommand, MessageHandler, MicroScheduler } from 'postage';
import { queueFlags } from 'postage/internal';
import { pairedRow, progress, report, until, withVhost, type BenchRow } from './helpers.js';

const N = Number(process.env['BENCH_THROUGHPUT_N'] ?? 20_000);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 8);
const PREFETCH = 100;
const APP = 'BenchSink';
const RAW_QUEUE = 'raw-sink';
/** Generous bound on one drain; a stall fails the bench instead of hanging it. */
const DRAIN_TIMEOUT_MS = 60_000;

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

interface Drain {
  /** Messages per second. */
  rate: number;
  /** CPU time of this process per message while draining, in µs (the publisher is idle then). */
  cpuPerMessage: number;
}

function cpuSince(start: NodeJS.CpuUsage, n: number): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / n;
}

/** Publishes `n` copies of `content` to `queue` and waits for every confirm. */
async function fill(ch: ConfirmChannel, queue: string, n: number, content: Buffer): Promise<void> {
  for (let sent = 0; sent < n; ) {
    const window = Math.min(1000, n - sent);
    for (let i = 0; i < window; i++) ch.publish('', queue, content, { contentType: 'application/json' });
    sent += window;
    await ch.waitForConfirms();
  }
}

async function queueDepth(ch: Channel, queue: string): Promise<number> {
  return (await ch.checkQueue(queue)).messageCount;
}

async function drainRaw(conn: ChannelModel, n: number): Promise<Drain> {
  const cpu0 = process.cpuUsage();
  const ch = await conn.createChannel();
  await ch.prefetch(PREFETCH);
  let count = 0;
  let first = 0;
  let last = 0;
  const { consumerTag } = await ch.consume(RAW_QUEUE, (msg) => {
    if (!msg) return;
    const now = performance.now();
    if (count === 0) first = now;
    last = now;
    count++;
    ch.ack(msg);
  });
  await until(`raw consumer to receive ${n} messages`, () => count >= n, DRAIN_TIMEOUT_MS);
  await ch.cancel(consumerTag);
  await ch.close();
  return { rate: ((n - 1) * 1000) / (last - first), cpuPerMessage: cpuSince(cpu0, n) };
}

async function drainPostage(connection: Connection, n: number): Promise<Drain> {
  const cpu0 = process.cpuUsage();
  const app = new BenchSink({ connection, prefetch: PREFETCH });
  const scheduler = new MicroScheduler();
  scheduler.add(app);
  const done = scheduler.run();
  try {
    await until(`postage to handle ${n} messages`, () => app.stats.handled >= n, DRAIN_TIMEOUT_MS);
  } finally {
    // Not 'quit': that would delete the application's own queue; the shared one stays anyway.
    await app.close('bench round done');
    await done;
  }
  if (app.count !== n) throw new Error(`postage handled ${app.count} messages, expected ${n}`);
  return { rate: ((n - 1) * 1000) / (app.last - app.first), cpuPerMessage: cpuSince(cpu0, n) };
}

await withVhost('postage-bench-throughput', async (url) => {
  const pubConn = await amqp.connect(url, { noDelay: true });
  const rawConn = await amqp.connect(url, { noDelay: true });
  const connection = new Connection({ url, clientName: 'bench throughput (postage)' });
  try {
    const pub = await pubConn.createConfirmChannel();
    // The application's shared queue, declared ahead with the flags the application uses,
    // so it can be filled before the application starts; the raw queue gets the same flags.
    const flags = queueFlags('shared', APP) ?? {};
    await pub.assertQueue(APP, flags);
    await pub.assertQueue(RAW_QUEUE, flags);
    const content = Buffer.from(JSON.stringify(new MessageCommand('hit', { payload: 'x'.repeat(64) }).setFingerprint({ name: 'bench', type: 'bench' }).body));

    const round = async (side: 'raw' | 'postage', n: number): Promise<Drain> => {
      const queue = side === 'raw' ? RAW_QUEUE : APP;
      await fill(pub, queue, n, content);
      const drain = side === 'raw' ? await drainRaw(rawConn, n) : await drainPostage(connection, n);
      const left = await queueDepth(pub, queue);
      if (left !== 0) throw new Error(`${side}: ${left} messages left in ${queue} after the round`);
      return drain;
    };

    progress(`warm-up (${N / 10} messages each)`);
    await round('raw', N / 10);
    await round('postage', N / 10);

    const rate = { raw: [] as number[], postage: [] as number[] };
    const cpu = { raw: [] as number[], postage: [] as number[] };
    for (let i = 0; i < ROUNDS; i++) {
      // ABBA: raw first on even rounds, postage first on odd ones.
      const order: Array<'raw' | 'postage'> = i % 2 === 0 ? ['raw', 'postage'] : ['postage', 'raw'];
      for (const side of order) {
        const drain = await round(side, N);
        rate[side].push(drain.rate);
        cpu[side].push(drain.cpuPerMessage);
        progress(`round ${i + 1}/${ROUNDS} ${side}: ${Math.round(drain.rate)} msg/s, ${drain.cpuPerMessage.toFixed(1)} µs CPU/msg`);
      }
    }
    const rows: BenchRow[] = [
      pairedRow(`consume ${N} msgs, prefetch ${PREFETCH}`, 'msg/s', rate.raw, rate.postage, { op: '>=', value: 0.9 }, 'raw: ack each; postage: GenericApplication + MessageHandler'),
      pairedRow('consumer CPU per message', 'µs', cpu.raw, cpu.postage, undefined, 'diagnostic: CPU of the consuming process'),
    ];
    report('throughput', rows);
  } finally {
    await connection.close('bench done');
    await rawConn.close().catch(() => undefined);
    await pubConn.close().catch(() => undefined);
  }
});
