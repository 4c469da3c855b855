/**
 * Runs every `*.bench.js` next to this file, one at a time, each in its own child process
 * (so one bench's sockets, timers and JIT state cannot colour the next), prints one table,
 * and writes `bench/results/latest.json`. A bench that crashes, times out or prints no
 * result is shown as FAILED with the end of its stderr, and the runner exits 1; a bench that
 * cannot run here (e.g. no pika for Python Postage) says so on one line; a missed goal is
 * shown, not fatal, because a shared or loaded machine can miss one without a regression.
 *
 * Usage: `npm run bench [-- name ...]` (names filter the files, e.g. `rpc`).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, rabbitmqctl, RESULT_PREFIX, ROOT, setting, type BenchResult, type BenchRow, type Goal } from './helpers.js';

/** One bench may take this long before it is killed and reported as failed (BENCH_TIMEOUT_S). */
const BENCH_TIMEOUT_MS = setting('TIMEOUT_S', 300) * 1000;
/** The whole run should fit in this; a longer run is flagged. */
const BUDGET_S = 600;
const here = path.dirname(fileURLToPath(import.meta.url));
const RESULTS = path.join(ROOT, 'bench', 'results', 'latest.json');

interface Outcome {
  file: string;
  rows: BenchRow[];
  facts?: Record<string, unknown>;
  skipped?: string;
  failure?: string;
  seconds: number;
  /** One-minute load average sampled every 5 s while the bench ran. */
  load: { min: number; median: number; max: number };
}

const loadSamples: number[] = [];
const sampler = setInterval(() => loadSamples.push(os.loadavg()[0] ?? 0), 5000);

function loadSince(from: number): Outcome['load'] {
  const s = loadSamples.slice(from);
  if (s.length === 0) s.push(os.loadavg()[0] ?? 0);
  return { min: Math.min(...s), median: median(s), max: Math.max(...s) };
}

/** The bench running now: its process group is stopped with the runner (Ctrl-C, SIGTERM). */
let running: number | undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    if (running !== undefined) {
      try {
        process.kill(-running, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    process.exit(130);
  });
}

function runBench(file: string): Promise<Outcome> {
  const started = performance.now();
  const firstSample = loadSamples.length;
  return new Promise((resolve) => {
    // A process group of its own: a bench killed at its timeout takes the daemons and
    // responders it spawned with it (a SIGKILL of the bench alone left them running).
    const child = spawn(process.execPath, [path.join(here, file)], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    running = child.pid;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      process.stderr.write(chunk);
    });
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, BENCH_TIMEOUT_MS);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      running = undefined;
      const base = { file, seconds: (performance.now() - started) / 1000, load: loadSince(firstSample) };
      const rows: BenchRow[] = [];
      let facts: Record<string, unknown> | undefined;
      let skipped: string | undefined;
      for (const line of stdout.split('\n')) {
        if (!line.startsWith(RESULT_PREFIX)) continue;
        try {
          const result = JSON.parse(line.slice(RESULT_PREFIX.length)) as BenchResult;
          rows.push(...result.rows);
          facts = { ...facts, ...result.facts };
          skipped ??= result.skipped;
        } catch (err) {
          resolve({ ...base, rows, failure: `unreadable result line: ${(err as Error).message}` });
          return;
        }
      }
      const extra = { ...(facts ? { facts } : {}), ...(skipped !== undefined ? { skipped } : {}) };
      const tail = stderr.trim().split('\n').slice(-5).join(' | ');
      if (timedOut) resolve({ ...base, rows, ...extra, failure: `killed after ${BENCH_TIMEOUT_MS / 1000} s: ${tail}` });
      else if (code !== 0) resolve({ ...base, rows, ...extra, failure: `exit ${code ?? signal}: ${tail}` });
      else if (rows.length === 0 && skipped === undefined) resolve({ ...base, rows, ...extra, failure: 'printed no result' });
      else resolve({ ...base, rows, ...extra });
    });
  });
}

function fmt(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const a = Math.abs(value);
  if (a >= 1000) return Math.round(value).toString();
  if (a >= 10) return value.toFixed(1);
  if (a >= 1) return value.toFixed(2);
  return value.toFixed(3);
}

/** The ratio ± its spread; a row without a spread (NaN, null in JSON) shows the ratio alone. */
function ratioText(r: BenchRow): string {
  const ratio = typeof r.ratio === 'number' && Number.isFinite(r.ratio) ? r.ratio.toFixed(2) : '—';
  return typeof r.spread === 'number' && Number.isFinite(r.spread) ? `${ratio} ± ${r.spread.toFixed(2)}` : ratio;
}

function goalText(goal: Goal | undefined, unit: string): string {
  if (!goal) return '—';
  const op = goal.op === '>=' ? '≥' : '≤';
  return goal.of === 'ratio' ? `${op} ${goal.value}×` : `${op} ${fmt(goal.value)} ${unit}`;
}

function table(outcomes: Outcome[]): string {
  const lines = [
    '| bench | metric | unit | baseline | baseline value | ours | ours/baseline | goal | met |',
    '| --- | --- | --- | --- | ---: | ---: | ---: | --- | --- |',
  ];
  for (const o of outcomes) {
    const name = o.file.replace(/\.bench\.js$/, '');
    for (const r of o.rows) {
      const met = r.met === undefined ? '—' : r.met ? 'met' : '**missed**';
      lines.push(`| ${name} | ${r.metric} | ${r.unit} | ${r.baselineName} | ${fmt(r.baseline)} | ${fmt(r.ours)} | ${ratioText(r)} | ${goalText(r.goal, r.unit)} | ${met} |`);
    }
    if (o.skipped !== undefined) lines.push(`| ${name} | skipped: ${o.skipped.replaceAll('|', '/')} | | | | | | | |`);
    if (o.failure !== undefined) lines.push(`| ${name} | **FAILED** | | | | | | | ${o.failure.replaceAll('|', '/')} |`);
  }
  return lines.join('\n');
}

async function brokerVersion(): Promise<string> {
  try {
    return (await rabbitmqctl('version')).trim();
  } catch {
    return 'unknown (rabbitmqctl failed)';
  }
}

function packageVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

const loadavg = (): number[] => os.loadavg().map((l) => Math.round(l * 100) / 100);

const filters = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.js'))
  .filter((f) => filters.length === 0 || filters.some((name) => f.includes(name)))
  .sort();
if (files.length === 0) {
  process.stderr.write(`no *.bench.js in ${here} matches ${filters.join(', ') || '(all)'}; run \`npm run build\` first\n`);
  process.exit(1);
}

const startedAt = new Date();
const t0 = performance.now();
const cpus = os.cpus();
const machine = {
  cpus: os.availableParallelism(),
  model: cpus[0]?.model.trim() ?? 'unknown',
  memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
  os: `${os.type()} ${os.release()}`,
  node: process.version,
  rabbitmq: await brokerVersion(),
  amqplib: packageVersion('amqplib'),
};
const loadAtStart = loadavg();
process.stderr.write(`cpus: ${machine.cpus} × ${machine.model}\nnode ${machine.node}, RabbitMQ ${machine.rabbitmq}, amqplib ${machine.amqplib}, ${machine.os}\nload average at start: ${loadAtStart.join(' ')}\n`);

const outcomes: Outcome[] = [];
for (const file of files) {
  process.stderr.write(`\n${file}\n`);
  const outcome = await runBench(file);
  const status = outcome.failure !== undefined ? 'FAILED' : outcome.skipped !== undefined ? `skipped (${outcome.skipped})` : 'done';
  process.stderr.write(`  ${status} in ${outcome.seconds.toFixed(1)} s, load average ${outcome.load.min.toFixed(1)}–${outcome.load.max.toFixed(1)}\n`);
  outcomes.push(outcome);
}
clearInterval(sampler);
const seconds = (performance.now() - t0) / 1000;
const loadAtEnd = loadavg();
const allLoad = loadSamples.length > 0 ? loadSamples : [os.loadavg()[0] ?? 0];
const goals = outcomes.flatMap((o) => o.rows).filter((r) => r.met !== undefined);
const metCount = goals.filter((r) => r.met).length;

const results = {
  startedAt: startedAt.toISOString(),
  seconds: Math.round(seconds),
  withinBudget: seconds <= BUDGET_S,
  ...(filters.length > 0 ? { partial: `only benches matching ${filters.join(', ')}` } : {}),
  machine,
  load: { atStart: loadAtStart, atEnd: loadAtEnd, oneMinute: { min: Math.min(...allLoad), median: median(allLoad), max: Math.max(...allLoad) } },
  goals: { met: metCount, total: goals.length },
  benches: outcomes.map((o) => ({
    bench: o.file.replace(/\.bench\.js$/, ''),
    status: o.failure !== undefined ? 'failed' : o.skipped !== undefined ? 'skipped' : 'ok',
    seconds: Math.round(o.seconds * 10) / 10,
    load: o.load,
    ...(o.failure !== undefined ? { failure: o.failure } : {}),
    ...(o.skipped !== undefined ? { skipped: o.skipped } : {}),
    ...(o.facts ? { facts: o.facts } : {}),
    rows: o.rows,
  })),
};
mkdirSync(path.dirname(RESULTS), { recursive: true });
writeFileSync(RESULTS, `${JSON.stringify(results, null, 2)}\n`);

const summary = [
  `cpus: ${machine.cpus} × ${machine.model}, ${machine.memoryGiB} GiB`,
  `node ${machine.node}, RabbitMQ ${machine.rabbitmq}, amqplib ${machine.amqplib}, ${machine.os}`,
  `load average (1 min) at start ${loadAtStart[0]}, at end ${loadAtEnd[0]}; during the run min ${results.load.oneMinute.min.toFixed(2)}, median ${results.load.oneMinute.median.toFixed(2)}, max ${results.load.oneMinute.max.toFixed(2)}`,
  `duration: ${seconds.toFixed(0)} s${seconds > BUDGET_S ? ` (over the ${BUDGET_S} s budget: lower BENCH_ROUNDS or the sizes)` : ''}; goals met: ${metCount} of ${goals.length}`,
];
process.stdout.write(
  `\n${summary.join('\n')}\n\n${table(outcomes)}\n\nratio: median of per-round ours/baseline ratios, ± half their interquartile range. Results: ${path.relative(process.cwd(), RESULTS)}\n`,
);
process.exitCode = outcomes.some((o) => o.failure !== undefined) ? 1 : 0;
