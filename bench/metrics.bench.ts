/**
 * What the daemon's metrics cost the hot path (issue 15 goal: under 3 % of consume
 * throughput), and what the trace context costs, measured the way throughput.bench.ts
 * measures the consumer: a queue filled ahead with Postage `hit` commands, each in a trace of
 * its own (a `traceparent` header: untraced messages are handled outside any trace and cost
 * nothing), drained by a GenericApplication whose trivial handler counts,
 * rate = (N - 1) / (last - first).
 *
 * Three sides, each round in a fresh child process (prom-client's default metrics start
 * timers and a GC observer, and an AsyncLocalStorage once used keeps Node 20's promise hooks
 * on for the rest of the process: one side must not colour the next):
 * - `off`: the library's defaults (trace context on), no metrics: the daemon with
 *   `metrics.listen` empty;
 * - `on`: the same plus the daemon's metrics (DaemonMetrics tracking the application: the
 *   `settled` listener feeding the handler histogram, prom-client's default metrics);
 * - `notrace`: no metrics, `traceContext: false`.
 * Rows: metrics on/off (`raw` column = off), and trace context on/off (`raw` = notrace).
 * The side order turns each round, so drift of the machine weighs on every side alike.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';
import { Connection, formatTraceparent, GenericApplication, MessageCommand, MessageHandler, MicroScheduler, newTrace } from 'postage';
import { queueFlags } from 'postage/internal';
import { DaemonMetrics } from '../daemon/metrics.js';
import { RestartState } from '../daemon/restart-state.js';
import { pairedRow, progress, report, until, withVhost } from './helpers.js';

const N = Number(process.env['BENCH_THROUGHPUT_N'] ?? 20_000);
const WARM = N / 10;
/** 3 sides a round, each a child process: 5 rounds keep the bench inside run.ts's 150 s on a loaded 2-core machine. */
const ROUNDS = Number(process.env['BENCH_METRICS_ROUNDS'] ?? 5);
const PREFETCH = 100;
const APP = 'BenchMetricsSink';
const DRAIN_TIMEOUT_MS = 60_000;
const SIDES = ['off', 'on', 'notrace'] as const;
type Side = (typeof SIDES)[number];

class BenchMetricsSink extends GenericApplication {
  static override appName = APP;
  count = 0;
  first = 0;
  last = 0;

  @MessageHandler('command', 'hit')
  onHit(_content: unknown): void {
    this.count++;
    // The first WARM messages warm the JIT up; the next N are timed.
    if (this.count === WARM + 1) this.first = performance.now();
    if (this.count === WARM + N) this.last = performance.now();
  }
}

/** One drain in this (child) process: prints `{rate, cpu}` as the last stdout line. */
async function child(url: string, side: Side): Promise<void> {
  const connection = new Connection({ url, clientName: `bench metrics (${side})` });
  const app = new BenchMetricsSink({ connection, prefetch: PREFETCH, traceContext: side !== 'notrace' });
  const metrics =
    side === 'on'
      ? new DaemonMetrics({ connection, state: RestartState.fromEnv(undefined, 60_000), version: 'bench', applications: () => [], maxLoopLagMs: () => 0 })
      : undefined;
  metrics?.track(app);
  const scheduler = new MicroScheduler();
  scheduler.add(app);
  const done = scheduler.run();
  const cpu0 = process.cpuUsage();
  try {
    await until(`${side}: ${WARM + N} messages handled`, () => app.stats.handled >= WARM + N, DRAIN_TIMEOUT_MS);
  } finally {
    await app.close('bench round done');
    await done;
  }
  const used = process.cpuUsage(cpu0);
  // The exposition works, and counted what it should (out of the timing).
  if (metrics && !(await metrics.exposition()).body.includes(`postaged_messages_handled_total{app="${APP}"} ${WARM + N}`)) throw new Error('the metrics did not count the drain');
  metrics?.close();
  await connection.close('bench done');
  process.stdout.write(`${JSON.stringify({ rate: ((N - 1) * 1000) / (app.last - app.first), cpu: (used.user + used.system) / (WARM + N) })}\n`);
}

/** Runs one side in a child process and returns what it printed. */
function drain(url: string, side: Side): Promise<{ rate: number; cpu: number }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [fileURLToPath(import.meta.url), '--child', url, side], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    proc.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    proc.on('close', (code) => {
      const last = out.trim().split('\n').at(-1) ?? '';
      if (code !== 0) reject(new Error(`${side} child exited ${code}`));
      else resolve(JSON.parse(last) as { rate: number; cpu: number });
    });
  });
}

async function parent(): Promise<void> {
  await withVhost('postage-bench-metrics', async (url) => {
    const pubConn = await amqp.connect(url, { noDelay: true });
    try {
      const pub = await pubConn.createConfirmChannel();
      await pub.assertQueue(APP, queueFlags('shared', APP) ?? {});
      // Non-persistent, as in throughput.bench.ts: the broker's disk would hide the client's cost.
      const content = Buffer.from(JSON.stringify(new MessageCommand('hit', { payload: 'x'.repeat(64) }).setFingerprint({ name: 'bench', type: 'bench' }).body));
      const fill = async (n: number): Promise<void> => {
        for (let sent = 0; sent < n; ) {
          const window = Math.min(1000, n - sent);
          for (let i = 0; i < window; i++) pub.publish('', APP, content, { contentType: 'application/json', headers: { traceparent: formatTraceparent(newTrace()) } });
          sent += window;
          await pub.waitForConfirms();
        }
      };
      const rate: Record<Side, number[]> = { off: [], on: [], notrace: [] };
      const cpu: Record<Side, number[]> = { off: [], on: [], notrace: [] };
      for (let i = 0; i < ROUNDS; i++) {
        const order = SIDES.map((_, k) => SIDES[(i + k) % SIDES.length] as Side);
        for (const side of order) {
          await fill(WARM + N);
          const r = await drain(url, side);
          const left = (await pub.checkQueue(APP)).messageCount;
          if (left !== 0) throw new Error(`${side}: ${left} messages left after the round`);
          rate[side].push(r.rate);
          cpu[side].push(r.cpu);
          progress(`round ${i + 1}/${ROUNDS} ${side}: ${Math.round(r.rate)} msg/s, ${r.cpu.toFixed(1)} µs CPU/msg`);
        }
      }
      report('metrics', [
        pairedRow({ metric: `consume ${N} msgs, metrics on/off`, unit: 'msg/s', baselineName: 'metrics off (trace context on)', baseline: rate.off, ours: rate.on, goal: { of: 'ratio', op: '>=', value: 0.97 } }),
        pairedRow({ metric: 'consumer CPU per message, metrics on/off', unit: 'µs', baselineName: 'metrics off', baseline: cpu.off, ours: cpu.on, note: 'diagnostic' }),
        pairedRow({ metric: `consume ${N} msgs, trace context on/off`, unit: 'msg/s', baselineName: 'traceContext false (no metrics)', baseline: rate.notrace, ours: rate.off, note: 'ours: traceContext true, the default' }),
        pairedRow({ metric: 'consumer CPU per message, trace context on/off', unit: 'µs', baselineName: 'traceContext false', baseline: cpu.notrace, ours: cpu.off, note: 'diagnostic' }),
      ]);
    } finally {
      await pubConn.close().catch(() => undefined);
    }
  });
}

if (process.argv[2] === '--child') await child(process.argv[3] as string, process.argv[4] as Side);
else await parent();
