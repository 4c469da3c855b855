/**
 * Shared pieces of the benchmarks: a fresh vhost per bench, sizes read from the environment,
 * summary statistics, and the one-line JSON result a bench prints for `bench/run.ts`.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const BROKER_HOST = process.env['POSTAGE_HOST'] ?? '127.0.0.1';
export const BROKER_PORT = Number(process.env['POSTAGE_PORT'] ?? 5672);

/** The project's root (benches run compiled, from `dist/bench/`). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Prefix of the line carrying a bench's result; everything else on stdout is ignored. */
export const RESULT_PREFIX = 'BENCH_RESULT ';

/**
 * A size or count from the environment (`BENCH_<NAME>`), else `fallback`. The defaults are
 * sized so that the whole `npm run bench` fits in 10 minutes on a loaded 2-core machine.
 */
export function setting(name: string, fallback: number): number {
  const raw = process.env[`BENCH_${name}`];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`BENCH_${name}=${raw}: expected a positive number`);
  return value;
}

/** Paired rounds per bench (BENCH_ROUNDS). */
export const ROUNDS = setting('ROUNDS', 6);

/** Runs rabbitmqctl (needs root, or a user in the rabbitmq group) and returns its stdout. */
export async function rabbitmqctl(...args: string[]): Promise<string> {
  const { stdout } = await run('rabbitmqctl', ['-q', ...args], { env: { ...process.env, PATH: `${process.env['PATH'] ?? ''}:/usr/sbin` } });
  return stdout;
}

/**
 * Creates a vhost for one bench, runs `fn` with its URL, and deletes the vhost afterwards
 * whatever happened (deleting a vhost also closes its connections and drops its queues).
 */
export async function withVhost<T>(prefix: string, fn: (url: string, vhost: string) => Promise<T>): Promise<T> {
  const vhost = `${prefix}-${randomUUID().slice(0, 8)}`;
  await rabbitmqctl('add_vhost', vhost);
  try {
    await rabbitmqctl('set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*');
    return await fn(`amqp://guest:guest@${BROKER_HOST}:${BROKER_PORT}/${encodeURIComponent(vhost)}`, vhost);
  } finally {
    await rabbitmqctl('delete_vhost', vhost).catch((err: unknown) => process.stderr.write(`could not delete vhost ${vhost}: ${String(err)}\n`));
  }
}

/** The `p`-th percentile (0..100) of `values`, nearest-rank method. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new Error('percentile: no values');
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] as number;
}

/** The `q`-quantile (0..1) of `values`, interpolated linearly between ranks (q = 0.5: the median). */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) throw new Error('quantile: no values');
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return (sorted[lo] as number) + ((sorted[hi] as number) - (sorted[lo] as number)) * (pos - lo);
}

export function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}

/**
 * A goal of issue 14: the ratio ours/baseline (`of: 'ratio'`), or our own figure
 * (`of: 'ours'`, e.g. RSS < 80 MiB), must be `>=` or `<=` this value.
 */
export interface Goal {
  of: 'ratio' | 'ours';
  op: '>=' | '<=';
  value: number;
}

/** One row of the benchmark table. */
export interface BenchRow {
  /** What is measured, e.g. `consume 20000 msgs, prefetch 100, library`. */
  metric: string;
  unit: string;
  /** What the baseline column is (`raw amqplib, batched acks`, `Python Postage 1.2.1`, `floor`…). */
  baselineName: string;
  /** Median over rounds of the baseline's figure. */
  baseline: number;
  /** Median over rounds of our figure. */
  ours: number;
  /** Median of the per-round ours/baseline ratios. */
  ratio: number;
  /** Half the interquartile range of the per-round ratios (robust to one disturbed round); NaN (null in JSON) when not meaningful. */
  spread: number;
  rounds: number;
  goal?: Goal;
  /** Whether the goal is met (absent when the row has no goal). */
  met?: boolean;
  note?: string;
}

export interface RowSpec {
  metric: string;
  unit: string;
  baselineName: string;
  /** The baseline's figure per round. */
  baseline: readonly number[];
  /** Our figure per round (same rounds, same order). */
  ours: readonly number[];
  goal?: Goal;
  note?: string;
}

/** Whether `value` meets `goal`. */
export function meets(goal: Goal, ratio: number, ours: number): boolean {
  const v = goal.of === 'ratio' ? ratio : ours;
  return goal.op === '>=' ? v >= goal.value : v <= goal.value;
}

/**
 * A row from paired rounds: round i of the baseline is compared with round i of ours, so
 * slow drift of the machine during the run weighs on both sides of each ratio alike.
 */
export function pairedRow(spec: RowSpec): BenchRow {
  const { baseline, ours } = spec;
  if (baseline.length !== ours.length) throw new Error(`${spec.metric}: ${baseline.length} baseline rounds but ${ours.length} of ours`);
  const ratios = baseline.map((b, i) => (ours[i] as number) / b);
  const row: BenchRow = {
    metric: spec.metric,
    unit: spec.unit,
    baselineName: spec.baselineName,
    baseline: median(baseline),
    ours: median(ours),
    ratio: median(ratios),
    spread: (quantile(ratios, 0.75) - quantile(ratios, 0.25)) / 2,
    rounds: baseline.length,
  };
  if (spec.goal) {
    row.goal = spec.goal;
    row.met = meets(spec.goal, row.ratio, row.ours);
  }
  if (spec.note !== undefined) row.note = spec.note;
  return row;
}

/** What a bench prints on its result line. */
export interface BenchResult {
  bench: string;
  rows: BenchRow[];
  /** Set when the bench could not run here (e.g. Python Postage's pika is absent). */
  skipped?: string;
  /** Facts worth keeping with the results (sizes, settings, what a baseline is). */
  facts?: Record<string, unknown>;
}

/** Prints a bench's rows on one stdout line for the runner. */
export function report(bench: string, rows: BenchRow[], facts?: Record<string, unknown>): void {
  const result: BenchResult = { bench, rows, ...(facts ? { facts } : {}) };
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(result)}\n`);
}

/** Says, on the result line, that this bench cannot run here, and why (one clear line). */
export function skip(bench: string, reason: string): void {
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify({ bench, rows: [], skipped: reason } satisfies BenchResult)}\n`);
}

/** Progress for a human watching; the runner passes stderr through. */
export function progress(message: string): void {
  process.stderr.write(`  ${message}\n`);
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `check` every `everyMs` until it is true; throws after `timeoutMs`, naming `what`,
 * so a bench that stalls fails instead of hanging.
 */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 5): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Wall-clock time in ms with sub-ms precision, comparable across processes of one machine. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * Rotating order of `sides` for round `r` (ABBA for two sides), so that no side is always
 * first after the fill or last before the next one.
 */
export function roundOrder<T>(sides: readonly T[], r: number): T[] {
  if (sides.length === 2) return r % 2 === 0 ? [...sides] : [...sides].reverse();
  const k = r % sides.length;
  return [...sides.slice(k), ...sides.slice(0, k)];
}
