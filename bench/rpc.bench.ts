/**
 * RPC latency, sequential calls (SPEC §8 target: postage p50 ≤ 1.2× raw direct reply-to).
 *
 * - raw: an amqplib client on direct reply-to (correlation ids, a pending map) calling an
 *   amqplib responder that answers a fixed, pre-encoded Postage result and acks;
 * - postage: `GenericProducer.rpcCommand()` calling a GenericApplication `RpcHandler`.
 * Two crossed pairs (raw client → postage responder, postage client → raw responder) show
 * which side any extra time is spent on. Every pair runs the same number of sequential
 * calls per round; the order of the pairs rotates from round to round.
 *
 * Raw connections use `noDelay: true` as postage does: with Nagle's algorithm a small
 * request waits for the previous segment's delayed ACK (~40 ms on Linux).
 */
import { randomUUID } from 'node:crypto';
import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { Connection, GenericApplication, GenericApplicationExchange, GenericProducer, MessageResult, MicroScheduler, RpcCommand, RpcHandler, queueFlags } from 'postage';
import { pairedRow, percentile, progress, report, until, withVhost, type BenchRow } from './helpers.js';

const CALLS = Number(process.env['BENCH_RPC_CALLS'] ?? 500);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 8);
const APP = 'BenchEcho';
const RAW_QUEUE = 'raw-echo';
/** Seconds a single postage call may take before the bench fails (never reached normally). */
const CALL_TIMEOUT_S = 10;

class BenchEcho extends GenericApplication {
  static override appName = APP;

  @RpcHandler('command', 'echo')
  echo(content: { parameters?: unknown }): unknown {
    return content.parameters;
  }
}

class EchoClient extends GenericProducer {
  static override eks = [[GenericApplicationExchange, `${APP}/rr`]] as const;
}

/** The raw client side: one channel consuming direct reply-to, a pending map by correlation id. */
class RawClient {
  private readonly pending = new Map<string, (msg: ConsumeMessage) => void>();
  private constructor(private readonly ch: Channel) {}

  static async open(conn: ChannelModel): Promise<RawClient> {
    const ch = await conn.createChannel();
    const client = new RawClient(ch);
    await ch.consume('amq.rabbitmq.reply-to', (msg) => client.onReply(msg), { noAck: true });
    return client;
  }

  private onReply(msg: ConsumeMessage | null): void {
    const id = msg?.properties.correlationId as string | undefined;
    const resolve = id === undefined ? undefined : this.pending.get(id);
    if (!msg || !resolve || id === undefined) return;
    this.pending.delete(id);
    resolve(msg);
  }

  call(exchange: string, key: string, content: Buffer): Promise<ConsumeMessage> {
    const correlationId = randomUUID();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(correlationId);
        reject(new Error(`raw RPC to ${exchange}/${key} got no reply in ${CALL_TIMEOUT_S} s`));
      }, CALL_TIMEOUT_S * 1000);
      this.pending.set(correlationId, (msg) => {
        clearTimeout(timer);
        resolve(msg);
      });
      this.ch.publish(exchange, key, content, { replyTo: 'amq.rabbitmq.reply-to', correlationId, contentType: 'application/json' });
    });
  }
}

/** The raw responder: answers every request with the same pre-encoded Postage result. */
async function rawResponder(conn: ChannelModel, reply: Buffer): Promise<void> {
  const ch = await conn.createChannel();
  await ch.prefetch(100);
  await ch.consume(RAW_QUEUE, (msg) => {
    if (!msg) return;
    const { replyTo, correlationId } = msg.properties as { replyTo?: string; correlationId?: string };
    if (replyTo) ch.publish('', replyTo, reply, { contentType: 'application/json', ...(correlationId ? { correlationId } : {}) });
    ch.ack(msg);
  });
}

interface Timing {
  /** Latency of each call, in ms. */
  latencies: number[];
  /** CPU time of this process per call (client and responder both run here), in µs. */
  cpuPerCall: number;
}

/** Runs `CALLS` sequential calls. */
async function timeCalls(call: (i: number) => Promise<unknown>): Promise<Timing> {
  const latencies: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < CALLS; i++) {
    const t0 = performance.now();
    await call(i);
    latencies.push(performance.now() - t0);
  }
  const cpu = process.cpuUsage(cpu0);
  return { latencies, cpuPerCall: (cpu.user + cpu.system) / CALLS };
}

type Pair = 'raw→raw' | 'postage→postage' | 'raw→postage' | 'postage→raw';
const PAIRS: Pair[] = ['raw→raw', 'postage→postage', 'raw→postage', 'postage→raw'];

await withVhost('postage-bench-rpc', async (url) => {
  const rawClientConn = await amqp.connect(url, { noDelay: true });
  const rawServerConn = await amqp.connect(url, { noDelay: true });
  const clientConnection = new Connection({ url, clientName: 'bench rpc client (postage)' });
  const serverConnection = new Connection({ url, clientName: 'bench rpc responder (postage)' });
  const app = new BenchEcho({ connection: serverConnection, prefetch: 100 });
  const scheduler = new MicroScheduler();
  let done: Promise<void> | undefined;
  try {
    const setup = await rawServerConn.createChannel();
    // Both responders sit behind the same direct exchange, so routing costs the broker the same.
    await GenericApplicationExchange.declare(setup);
    await setup.assertQueue(RAW_QUEUE, queueFlags('shared', RAW_QUEUE) ?? {});
    await setup.bindQueue(RAW_QUEUE, GenericApplicationExchange.name, RAW_QUEUE);
    await setup.close();
    const fp = { name: 'bench', type: 'bench' };
    const request = Buffer.from(JSON.stringify(new RpcCommand('echo', { n: 1 }).setFingerprint(fp).body));
    const reply = Buffer.from(JSON.stringify(new MessageResult({ n: 1 }).setFingerprint(fp).body));
    await rawResponder(rawServerConn, reply);
    const rawClient = await RawClient.open(rawClientConn);
    const producer = new EchoClient({ connection: clientConnection, fingerprint: fp });

    scheduler.add(app);
    done = scheduler.run();
    await until('the postage responder to consume', () => app.consuming, 10_000);

    const calls: Record<Pair, (i: number) => Promise<unknown>> = {
      'raw→raw': () => rawClient.call(GenericApplicationExchange.name, RAW_QUEUE, request),
      'raw→postage': () => rawClient.call(GenericApplicationExchange.name, `${APP}/rr`, request),
      'postage→postage': async (i) => check(await producer.rpcCommand('echo', { n: i }, { _timeout: CALL_TIMEOUT_S, _max_retry: 0 })),
      'postage→raw': async (i) => check(await producer.rpcCommand('echo', { n: i }, { _timeout: CALL_TIMEOUT_S, _max_retry: 0, _key: RAW_QUEUE })),
    };

    progress(`warm-up (${CALLS} calls per pair)`);
    for (const pair of PAIRS) await timeCalls(calls[pair]);

    const empty = (): Record<Pair, number[]> => ({ 'raw→raw': [], 'postage→postage': [], 'raw→postage': [], 'postage→raw': [] });
    const p50 = empty();
    const p99 = empty();
    const cpu = empty();
    for (let r = 0; r < ROUNDS; r++) {
      const order = [...PAIRS.slice(r % PAIRS.length), ...PAIRS.slice(0, r % PAIRS.length)];
      for (const pair of order) {
        const { latencies, cpuPerCall } = await timeCalls(calls[pair]);
        p50[pair].push(percentile(latencies, 50));
        p99[pair].push(percentile(latencies, 99));
        cpu[pair].push(cpuPerCall);
      }
      progress(`round ${r + 1}/${ROUNDS}: ${PAIRS.map((p) => `${p} p50 ${(p50[p].at(-1) ?? 0).toFixed(3)} ms`).join(', ')}`);
    }
    const rows: BenchRow[] = [
      pairedRow(`RPC p50, ${CALLS} sequential calls`, 'ms', p50['raw→raw'], p50['postage→postage'], { op: '<=', value: 1.2 }, 'raw direct reply-to vs GenericProducer.rpcCommand + RpcHandler'),
      pairedRow(`RPC p99, ${CALLS} sequential calls`, 'ms', p99['raw→raw'], p99['postage→postage'], undefined, 'no target in SPEC §8'),
      pairedRow('RPC p50, raw client → postage responder', 'ms', p50['raw→raw'], p50['raw→postage'], undefined, 'diagnostic: responder side alone'),
      pairedRow('RPC p50, postage client → raw responder', 'ms', p50['raw→raw'], p50['postage→raw'], undefined, 'diagnostic: client side alone'),
      pairedRow('RPC CPU per call, client + responder', 'µs', cpu['raw→raw'], cpu['postage→postage'], undefined, 'diagnostic: CPU of this process, both ends'),
    ];
    report('rpc', rows);
  } finally {
    await app.close('bench done');
    await done;
    await clientConnection.close('bench done');
    await serverConnection.close('bench done');
    await rawClientConn.close().catch(() => undefined);
    await rawServerConn.close().catch(() => undefined);
  }
});

function check(result: MessageResult): MessageResult {
  if (!result.ok) throw new Error(`RPC failed: ${JSON.stringify(result.body.content)}`);
  return result;
}
