/**
 * Fire-and-forget publish rate with publisher confirms (no target in SPEC §8; reported
 * so a regression in the send path shows).
 *
 * - raw: an amqplib confirm channel; each message is a Postage `hit` command body built
 *   and `JSON.stringify`d per message (what any raw user must do), published persistent,
 *   and every window of 100 waits for `waitForConfirms()`;
 * - postage: `producer.send(new MessageCommand('hit', …))`, 100 at a time under
 *   `Promise.all` (each `send` resolves on its own confirm).
 * Both publish to the same durable direct exchange, bound to a non-durable queue: postage
 * always publishes persistent, and a persistent message only reaches the disk in a durable
 * queue, which would make the broker's disk the thing measured. The queue is purged
 * between rounds.
 */
import amqp, { type ConfirmChannel } from 'amqplib';
import { Connection, Exchange, GenericProducer, MessageCommand, type FingerprintDict } from 'postage';
import { pairedRow, progress, report, withVhost } from './helpers.js';

const N = Number(process.env['BENCH_PUBLISH_N'] ?? 20_000);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 8);
const WINDOW = 100;
const QUEUE = 'publish-sink';
const KEY = 'hit';

class BenchExchange extends Exchange {
  static override name = 'bench.publish';
}

class HitProducer extends GenericProducer {
  static override eks = [[BenchExchange, KEY]] as const;
}

/** Returns messages per second. */
async function publishRaw(ch: ConfirmChannel, n: number, fingerprint: Partial<FingerprintDict>): Promise<number> {
  const t0 = performance.now();
  for (let sent = 0; sent < n; ) {
    const window = Math.min(WINDOW, n - sent);
    for (let i = 0; i < window; i++) {
      const body = { type: 'command', name: 'hit', category: 'message', version: '2', fingerprint, content: { parameters: { i: sent + i } }, _reserved: {} };
      ch.publish(BenchExchange.name, KEY, Buffer.from(JSON.stringify(body)), { contentType: 'application/json', persistent: true });
    }
    sent += window;
    await ch.waitForConfirms();
  }
  return (n * 1000) / (performance.now() - t0);
}

async function publishPostage(producer: GenericProducer, n: number): Promise<number> {
  const t0 = performance.now();
  for (let sent = 0; sent < n; ) {
    const window = Math.min(WINDOW, n - sent);
    const batch: Array<Promise<unknown>> = [];
    for (let i = 0; i < window; i++) batch.push(producer.send(new MessageCommand('hit', { i: sent + i })));
    sent += window;
    await Promise.all(batch);
  }
  return (n * 1000) / (performance.now() - t0);
}

await withVhost('postage-bench-publish', async (url) => {
  const rawConn = await amqp.connect(url, { noDelay: true });
  const connection = new Connection({ url, clientName: 'bench publish (postage)' });
  try {
    const ch = await rawConn.createConfirmChannel();
    await BenchExchange.declare(ch);
    await ch.assertQueue(QUEUE, { durable: false });
    await ch.bindQueue(QUEUE, BenchExchange.name, KEY);
    const producer = new HitProducer({ connection, fingerprint: { name: 'bench', type: 'bench' } });
    // The raw side carries the same fingerprint fields postage adds, so bodies are the same size.
    const fingerprint = producer.fingerprint;

    const round = async (side: 'raw' | 'postage', n: number): Promise<{ rate: number; cpuPerMessage: number }> => {
      const cpu0 = process.cpuUsage();
      const rate = side === 'raw' ? await publishRaw(ch, n, fingerprint) : await publishPostage(producer, n);
      const cpu = process.cpuUsage(cpu0);
      const { messageCount } = await ch.checkQueue(QUEUE);
      if (messageCount !== n) throw new Error(`${side}: ${messageCount} messages reached ${QUEUE}, expected ${n}`);
      await ch.purgeQueue(QUEUE);
      return { rate, cpuPerMessage: (cpu.user + cpu.system) / n };
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
        const r = await round(side, N);
        rate[side].push(r.rate);
        cpu[side].push(r.cpuPerMessage);
        progress(`round ${i + 1}/${ROUNDS} ${side}: ${Math.round(r.rate)} msg/s, ${r.cpuPerMessage.toFixed(1)} µs CPU/msg`);
      }
    }
    report('publish', [
      pairedRow(`publish ${N} msgs, confirms per ${WINDOW}`, 'msg/s', rate.raw, rate.postage, undefined, 'raw confirm channel vs producer.send; no target in SPEC §8'),
      pairedRow('publisher CPU per message', 'µs', cpu.raw, cpu.postage, undefined, 'diagnostic: CPU of the publishing process'),
    ]);
  } finally {
    await connection.close('bench done');
    await rawConn.close().catch(() => undefined);
  }
});
