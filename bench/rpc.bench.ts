/**
 * RPC, library on both sides against raw amqplib on both sides (issue 14 goals: p50 with one
 * call in flight ≤ 1.15× raw; calls/s with 32 in flight ≥ 0.85× raw at the same responder
 * prefetch).
 *
 * - raw: an amqplib client on direct reply-to (correlation ids, a pending map;
 *   bench/raw-rpc.ts) calling an amqplib responder that answers a fixed, pre-encoded Postage
 *   result and acks;
 * - postage: `GenericProducer.rpcCommand()` calling a GenericApplication `RpcHandler`.
 * Both responders have prefetch 100 and run in a child process (bench/rpc-responder.ts),
 * the clients here.
 *
 * One in flight: two crossed pairs (raw client → postage responder, postage client → raw
 * responder) show which side any extra time is spent on; every pair makes the same number of
 * sequential calls per round, and the order of the pairs rotates from round to round.
 * 32 in flight: 32 loops each make calls back to back until the round's calls are done.
 *
 * Raw connections use `noDelay: true` as postage does: with Nagle's algorithm a small
 * request waits for the previous segment's delayed ACK (~40 ms on Linux).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';
import { Connection, GenericApplicationExchange, GenericProducer, MessageResult, RpcCommand } from 'postage';
import { pairedRow, percentile, progress, report, roundOrder, ROUNDS, setting, withVhost, type BenchRow } from './helpers.js';
import { RawRpcClient } from './raw-rpc.js';
import { APP, RAW_QUEUE, type ResponderCommand, type ResponderMessage } from './rpc-responder.js';

const CALLS = setting('RPC_CALLS', 500);
/** Calls per round with 32 in flight. */
const PARALLEL_CALLS = setting('RPC_PARALLEL_CALLS', 4000);
const IN_FLIGHT = 32;
/** Seconds a single call may take before the bench fails (never reached normally). */
const CALL_TIMEOUT_S = 10;
const RESPONDER_START_MS = 20_000;

class EchoClient extends GenericProducer {
  static override eks = [[GenericApplicationExchange, `${APP}/rr`]] as const;
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
  /** Calls per second over the whole run. */
  rate: number;
  /** CPU time of the client process per call, in µs. */
  clientCpu: number;
  /** CPU time of the responder process per call, in µs. */
  responderCpu: number;
}

/** Runs `total` calls, `inFlight` at a time (each of `inFlight` loops calls back to back). */
async function timeCalls(responder: Responder, call: (i: number) => Promise<unknown>, total: number, inFlight: number): Promise<Timing> {
  const latencies: number[] = [];
  const responder0 = await responder.cpu();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let next = 0;
  const loop = async (): Promise<void> => {
    while (next < total) {
      const i = next++;
      const start = performance.now();
      await call(i);
      latencies.push(performance.now() - start);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, loop));
  const elapsed = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const responder1 = await responder.cpu();
  return { latencies, rate: (total * 1000) / elapsed, clientCpu: (cpu.user + cpu.system) / total, responderCpu: (responder1 - responder0) / total };
}

function check(result: MessageResult): MessageResult {
  if (!result.ok) throw new Error(`RPC failed: ${JSON.stringify(result.body.content)}`);
  return result;
}

type Pair = 'raw→raw' | 'postage→postage' | 'raw→postage' | 'postage→raw';
const PAIRS: Pair[] = ['raw→raw', 'postage→postage', 'raw→postage', 'postage→raw'];
const PARALLEL_PAIRS: Pair[] = ['raw→raw', 'postage→postage'];

await withVhost('postage-bench-rpc', async (url) => {
  const rawConn = await amqp.connect(url, { noDelay: true });
  const connection = new Connection({ url, clientName: 'bench rpc client (postage)' });
  let responder: Responder | undefined;
  let rawClient: RawRpcClient | undefined;
  try {
    responder = await Responder.start(url);
    const fp = { name: 'bench', type: 'bench' };
    const request = Buffer.from(JSON.stringify(new RpcCommand('echo', { n: 1 }).setFingerprint(fp).body));
    const raw = await RawRpcClient.open(rawConn);
    rawClient = raw;
    const producer = new EchoClient({ connection, fingerprint: fp });
    const options = { _timeout: CALL_TIMEOUT_S, _max_retry: 0 };
    const timeoutMs = CALL_TIMEOUT_S * 1000;

    const calls: Record<Pair, (i: number) => Promise<unknown>> = {
      'raw→raw': () => raw.call(GenericApplicationExchange.name, RAW_QUEUE, request, { timeoutMs }),
      'raw→postage': () => raw.call(GenericApplicationExchange.name, `${APP}/rr`, request, { timeoutMs }),
      'postage→postage': async (i) => check(await producer.rpcCommand('echo', { n: i }, options)),
      'postage→raw': async (i) => check(await producer.rpcCommand('echo', { n: i }, { ...options, _key: RAW_QUEUE })),
    };

    progress(`warm-up (${CALLS} calls per pair, then ${PARALLEL_CALLS / 4} with ${IN_FLIGHT} in flight)`);
    for (const pair of PAIRS) await timeCalls(responder, calls[pair], CALLS, 1);
    for (const pair of PARALLEL_PAIRS) await timeCalls(responder, calls[pair], PARALLEL_CALLS / 4, IN_FLIGHT);

    const empty = (): Record<Pair, number[]> => ({ 'raw→raw': [], 'postage→postage': [], 'raw→postage': [], 'postage→raw': [] });
    const p50 = empty();
    const p99 = empty();
    const clientCpu = empty();
    const responderCpu = empty();
    const rate32 = empty();
    const p99At32 = empty();
    const clientCpu32 = empty();
    const responderCpu32 = empty();
    for (let r = 0; r < ROUNDS; r++) {
      for (const pair of roundOrder(PAIRS, r)) {
        const t = await timeCalls(responder, calls[pair], CALLS, 1);
        p50[pair].push(percentile(t.latencies, 50));
        p99[pair].push(percentile(t.latencies, 99));
        clientCpu[pair].push(t.clientCpu);
        responderCpu[pair].push(t.responderCpu);
      }
      for (const pair of roundOrder(PARALLEL_PAIRS, r)) {
        const t = await timeCalls(responder, calls[pair], PARALLEL_CALLS, IN_FLIGHT);
        rate32[pair].push(t.rate);
        p99At32[pair].push(percentile(t.latencies, 99));
        clientCpu32[pair].push(t.clientCpu);
        responderCpu32[pair].push(t.responderCpu);
      }
      progress(
        `round ${r + 1}/${ROUNDS}: ${PAIRS.map((p) => `${p} p50 ${(p50[p].at(-1) ?? 0).toFixed(3)} ms`).join(', ')}; ${IN_FLIGHT} in flight: ${PARALLEL_PAIRS.map((p) => `${p} ${Math.round(rate32[p].at(-1) ?? 0)} calls/s`).join(', ')}`,
      );
    }
    const rawName = 'raw amqplib both sides';
    const rows: BenchRow[] = [
      pairedRow({ metric: `RPC p50, one in flight (${CALLS} sequential calls)`, unit: 'ms', baselineName: rawName, baseline: p50['raw→raw'], ours: p50['postage→postage'], goal: { of: 'ratio', op: '<=', value: 1.15 }, note: 'GenericProducer.rpcCommand → GenericApplication RpcHandler' }),
      pairedRow({ metric: 'RPC p99, one in flight', unit: 'ms', baselineName: rawName, baseline: p99['raw→raw'], ours: p99['postage→postage'] }),
      pairedRow({ metric: 'RPC p50, raw client → library responder', unit: 'ms', baselineName: rawName, baseline: p50['raw→raw'], ours: p50['raw→postage'], note: 'diagnostic: responder side alone' }),
      pairedRow({ metric: 'RPC p50, library client → raw responder', unit: 'ms', baselineName: rawName, baseline: p50['raw→raw'], ours: p50['postage→raw'], note: 'diagnostic: client side alone' }),
      pairedRow({ metric: 'RPC client CPU per call, one in flight', unit: 'µs', baselineName: rawName, baseline: clientCpu['raw→raw'], ours: clientCpu['postage→raw'], note: 'diagnostic: client process, same raw responder' }),
      pairedRow({ metric: 'RPC responder CPU per call, one in flight', unit: 'µs', baselineName: rawName, baseline: responderCpu['raw→raw'], ours: responderCpu['raw→postage'], note: 'diagnostic: responder process, same raw client' }),
      pairedRow({ metric: `RPC ${IN_FLIGHT} in flight (${PARALLEL_CALLS} calls), responder prefetch 100`, unit: 'calls/s', baselineName: rawName, baseline: rate32['raw→raw'], ours: rate32['postage→postage'], goal: { of: 'ratio', op: '>=', value: 0.85 } }),
      pairedRow({ metric: `RPC p99, ${IN_FLIGHT} in flight`, unit: 'ms', baselineName: rawName, baseline: p99At32['raw→raw'], ours: p99At32['postage→postage'] }),
      pairedRow({ metric: `RPC client CPU per call, ${IN_FLIGHT} in flight`, unit: 'µs', baselineName: rawName, baseline: clientCpu32['raw→raw'], ours: clientCpu32['postage→postage'], note: 'diagnostic: client process, each with its own responder' }),
      pairedRow({ metric: `RPC responder CPU per call, ${IN_FLIGHT} in flight`, unit: 'µs', baselineName: rawName, baseline: responderCpu32['raw→raw'], ours: responderCpu32['postage→postage'], note: 'diagnostic: responder process, each with its own client' }),
    ];
    report('rpc', rows, { sequentialCalls: CALLS, parallelCalls: PARALLEL_CALLS, inFlight: IN_FLIGHT, responderPrefetch: 100, rounds: ROUNDS });
  } finally {
    await rawClient?.close();
    await responder?.stop();
    await connection.close('bench done');
    await rawConn.close().catch(() => undefined);
  }
});
