/**
 * RPC latency, sequential calls (SPEC §8 target: postage p50 ≤ 1.2× raw direct reply-to).
 *
 * - raw: an amqplib client on direct reply-to (correlation ids, a pending map) calling an
 *   amqplib responder that answers a fixed, pre-encoded Postage result and acks;
 * - postage: `GenericProducer.rpcCommand()` calling a GenericApplication `RpcHandler`.
 * Two crossed pairs (raw client → postage responder, postage client → raw responder) show
 * which side any extra time is spent on. The responders run in a child process
 * (bench/rpc-responder.ts), the clients here. Every pair makes the same number of
 * sequential calls per round; the order of the pairs rotates from round to round.
 *
 * Raw connections use `noDelay: true` as postage does: with Nagle's algorithm a small
 * request waits for the previous segment's delayed ACK (~40 ms on Linux).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { Connection, GenericApplicationExchange, GenericProducer, MessageResult, RpcCommand } from 'postage';
import { pairedRow, percentile, progress, report, withVhost, type BenchRow } from './helpers.js';
import { APP, RAW_QUEUE, type ResponderCommand, type ResponderMessage } from './rpc-responder.js';

const CALLS = Number(process.env['BENCH_RPC_CALLS'] ?? 500);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 8);
/** Seconds a single call may take before the bench fails (never reached normally). */
const CALL_TIMEOUT_S = 10;
const RESPONDER_START_MS = 20_000;

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

/** The responder process, with a request/answer helper over IPC. */
class Responder {
  private constructor(private readonly child: ChildProcess) {}

  static start(url: string): Promise<Responder> {
    const child = fork(fileURLToPath(new URL('./rpc-responder.js', import.meta.url)), [url], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill();
        reject(new Error(`the responder process did not get ready in ${RESPONDER_START_MS} ms`));
      }, RESPONDER_START_MS);
      child.once('message', (msg: ResponderMessage) => {
        clearTimeout(timer);
        if ('ready' in msg) resolve(new Responder(child));
        else reject(new Error(`the responder process failed: ${'error' in msg ? msg.error : JSON.stringify(msg)}`));
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the responder process exited with ${code} before it was ready`));
      });
    });
  }

  /** The responder's CPU time so far, in µs. */
  cpu(): Promise<number> {
    return new Promise((resolve) => {
      this.child.once('message', (msg: ResponderMessage) => resolve('cpu' in msg ? msg.cpu.user + msg.cpu.system : NaN));
      this.child.send({ cmd: 'cpu' } satisfies ResponderCommand);
    });
  }

  /** Asks the responder to close and exit; kills it if it has not within 10 s. */
  stop(): Promise<void> {
    return new Promise((resolve) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        resolve();
        return;
      }
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
      this.child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      if (this.child.connected) this.child.send({ cmd: 'stop' } satisfies ResponderCommand);
      else this.child.kill();
    });
  }
}

interface Timing {
  /** Latency of each call, in ms. */
  latencies: number[];
  /** CPU time of the client process per call, in µs. */
  clientCpu: number;
  /** CPU time of the responder process per call, in µs. */
  responderCpu: number;
}

/** Runs `CALLS` sequential calls. */
async function timeCalls(responder: Responder, call: (i: number) => Promise<unknown>): Promise<Timing> {
  const latencies: number[] = [];
  const responder0 = await responder.cpu();
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < CALLS; i++) {
    const t0 = performance.now();
    await call(i);
    latencies.push(performance.now() - t0);
  }
  const cpu = process.cpuUsage(cpu0);
  const responder1 = await responder.cpu();
  return { latencies, clientCpu: (cpu.user + cpu.system) / CALLS, responderCpu: (responder1 - responder0) / CALLS };
}

function check(result: MessageResult): MessageResult {
  if (!result.ok) throw new Error(`RPC failed: ${JSON.stringify(result.body.content)}`);
  return result;
}

type Pair = 'raw→raw' | 'postage→postage' | 'raw→postage' | 'postage→raw';
const PAIRS: Pair[] = ['raw→raw', 'postage→postage', 'raw→postage', 'postage→raw'];

await withVhost('postage-bench-rpc', async (url) => {
  const rawConn = await amqp.connect(url, { noDelay: true });
  const connection = new Connection({ url, clientName: 'bench rpc client (postage)' });
  let responder: Responder | undefined;
  try {
    responder = await Responder.start(url);
    const fp = { name: 'bench', type: 'bench' };
    const request = Buffer.from(JSON.stringify(new RpcCommand('echo', { n: 1 }).setFingerprint(fp).body));
    const rawClient = await RawClient.open(rawConn);
    const producer = new EchoClient({ connection, fingerprint: fp });
    const options = { _timeout: CALL_TIMEOUT_S, _max_retry: 0 };

    const calls: Record<Pair, (i: number) => Promise<unknown>> = {
      'raw→raw': () => rawClient.call(GenericApplicationExchange.name, RAW_QUEUE, request),
      'raw→postage': () => rawClient.call(GenericApplicationExchange.name, `${APP}/rr`, request),
      'postage→postage': async (i) => check(await producer.rpcCommand('echo', { n: i }, options)),
      'postage→raw': async (i) => check(await producer.rpcCommand('echo', { n: i }, { ...options, _key: RAW_QUEUE })),
    };

    progress(`warm-up (${CALLS} calls per pair)`);
    for (const pair of PAIRS) await timeCalls(responder, calls[pair]);

    const empty = (): Record<Pair, number[]> => ({ 'raw→raw': [], 'postage→postage': [], 'raw→postage': [], 'postage→raw': [] });
    const p50 = empty();
    const p99 = empty();
    const clientCpu = empty();
    const responderCpu = empty();
    for (let r = 0; r < ROUNDS; r++) {
      const order = [...PAIRS.slice(r % PAIRS.length), ...PAIRS.slice(0, r % PAIRS.length)];
      for (const pair of order) {
        const t = await timeCalls(responder, calls[pair]);
        p50[pair].push(percentile(t.latencies, 50));
        p99[pair].push(percentile(t.latencies, 99));
        clientCpu[pair].push(t.clientCpu);
        responderCpu[pair].push(t.responderCpu);
      }
      progress(`round ${r + 1}/${ROUNDS}: ${PAIRS.map((p) => `${p} p50 ${(p50[p].at(-1) ?? 0).toFixed(3)} ms`).join(', ')}`);
    }
    const rows: BenchRow[] = [
      pairedRow(`RPC p50, ${CALLS} sequential calls`, 'ms', p50['raw→raw'], p50['postage→postage'], { op: '<=', value: 1.2 }, 'raw direct reply-to vs GenericProducer.rpcCommand + RpcHandler'),
      pairedRow(`RPC p99, ${CALLS} sequential calls`, 'ms', p99['raw→raw'], p99['postage→postage'], undefined, 'no target in SPEC §8'),
      pairedRow('RPC p50, raw client → postage responder', 'ms', p50['raw→raw'], p50['raw→postage'], undefined, 'diagnostic: responder side alone'),
      pairedRow('RPC p50, postage client → raw responder', 'ms', p50['raw→raw'], p50['postage→raw'], undefined, 'diagnostic: client side alone'),
      pairedRow('RPC client CPU per call', 'µs', clientCpu['raw→raw'], clientCpu['postage→raw'], undefined, 'diagnostic: client process, same raw responder'),
      pairedRow('RPC responder CPU per call', 'µs', responderCpu['raw→raw'], responderCpu['raw→postage'], undefined, 'diagnostic: responder process, same raw client'),
    ];
    report('rpc', rows);
  } finally {
    await responder?.stop();
    await connection.close('bench done');
    await rawConn.close().catch(() => undefined);
  }
});
