/**
 * Shared pieces of the benchmarks: a fresh vhost per bench, summary statistics, and the
 * one-line JSON result a bench prints for `bench/run.ts`.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const BROKER_HOST = process.env['POSTAGE_HOST'] ?? '127.0.0.1';
export const BROKER_PORT = Number(process.env['POSTAGE_PORT'] ?? 5672);

/** Prefix of the line carrying a bench's result; everything else on stdout is ignored. */
export const RESULT_PREFIX = 'BENCH_RESULT ';

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

/** A target of SPEC §8: the postage/raw ratio must be `>=` or `<=` this value. */
export interface Target {
  op: '>=' | '<=';
  value: number;
}

/** One row of the benchmark table. */
export interface BenchRow {
  /** What is measured, e.g. `consume, prefetch 100`. */
  metric: string;
  unit: string;
  /** Median over rounds of the raw amqplib figure. */
  raw: number;
  /** Median over rounds of the postage figure. */
  postage: number;
  /** Median of the per-round postage/raw ratios. */
  ratio: number;
  /** Half the interquartile range of the per-round ratios (robust to one disturbed round). */
  spread: number;
  rounds: number;
  target?: Target;
  note?: string;
}

/**
 * A row from paired rounds: round i of raw is compared with round i of postage, so slow
 * drift of the machine during the run affects both sides of each ratio alike.
 */
export function pairedRow(metric: string, unit: string, raw: readonly number[], postage: readonly number[], target?: Target, note?: string): BenchRow {
  if (raw.length !== postage.length) throw new Error(`${metric}: ${raw.length} raw rounds but ${postage.length} postage rounds`);
  const ratios = raw.map((r, i) => (postage[i] as number) / r);
  const spread = (quantile(ratios, 0.75) - quantile(ratios, 0.25)) / 2;
  const row: BenchRow = { metric, unit, raw: quantile(raw, 0.5), postage: quantile(postage, 0.5), ratio: quantile(ratios, 0.5), spread, rounds: raw.length };
  if (target) row.target = target;
  if (note !== undefined) row.note = note;
  return row;
}

/** Whether a row meets its target (undefined when it has none). */
export function meets(row: BenchRow): boolean | undefined {
  if (!row.target) return undefined;
  return row.target.op === '>=' ? row.ratio >= row.target.value : row.ratio <= row.target.value;
}

/** Prints a bench's rows on one stdout line for the runner. */
export function report(bench: string, rows: BenchRow[]): void {
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify({ bench, rows })}\n`);
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
 * Polls `check` every 5 ms until it is true; throws after `timeoutMs`, naming `what`,
 * so a bench that stalls fails instead of hanging.
 */
export async function until(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}
