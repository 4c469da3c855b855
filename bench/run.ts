/**
 * Runs every `*.bench.js` next to this file, one at a time, each in its own child process
 * (so one bench's sockets, timers and JIT state cannot colour the next), and prints one
 * table. A bench that crashes, times out or prints no result is shown as FAILED with the
 * end of its stderr, and the runner exits 1; a missed target is shown, not fatal, because
 * a shared or loaded machine can miss one without a regression.
 *
 * Usage: `npm run bench [-- name ...]` (names filter the files, e.g. `rpc`).
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { meets, rabbitmqctl, RESULT_PREFIX, type BenchRow } from './helpers.js';

/** One bench may take this long before it is killed and reported as failed. */
const BENCH_TIMEOUT_MS = 150_000;
const here = path.dirname(fileURLToPath(import.meta.url));

interface Outcome {
  file: string;
  rows: BenchRow[];
  failure?: string;
  seconds: number;
}

function runBench(file: string): Promise<Outcome> {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(here, file)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      process.stderr.write(chunk);
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, BENCH_TIMEOUT_MS);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const seconds = (performance.now() - started) / 1000;
      const rows: BenchRow[] = [];
      for (const line of stdout.split('\n')) {
        if (!line.startsWith(RESULT_PREFIX)) continue;
        try {
          rows.push(...(JSON.parse(line.slice(RESULT_PREFIX.length)) as { rows: BenchRow[] }).rows);
        } catch (err) {
          resolve({ file, rows, seconds, failure: `unreadable result line: ${(err as Error).message}` });
          return;
        }
      }
      const tail = stderr.trim().split('\n').slice(-5).join(' | ');
      if (timedOut) resolve({ file, rows, seconds, failure: `killed after ${BENCH_TIMEOUT_MS / 1000} s: ${tail}` });
      else if (code !== 0) resolve({ file, rows, seconds, failure: `exit ${code ?? signal}: ${tail}` });
      else if (rows.length === 0) resolve({ file, rows, seconds, failure: 'printed no result' });
      else resolve({ file, rows, seconds });
    });
  });
}

function fmt(value: number): string {
  if (value >= 1000) return Math.round(value).toString();
  if (value >= 10) return value.toFixed(1);
  if (value >= 1) return value.toFixed(2);
  return value.toFixed(3);
}

function table(outcomes: Outcome[]): string {
  const lines = ['| bench | metric | unit | raw amqplib | postage | postage/raw | target | met |', '| --- | --- | --- | ---: | ---: | ---: | --- | --- |'];
  for (const o of outcomes) {
    const name = o.file.replace(/\.bench\.js$/, '');
    for (const r of o.rows) {
      const met = meets(r);
      const target = r.target ? `${r.target.op} ${r.target.value}` : '—';
      lines.push(`| ${name} | ${r.metric} | ${r.unit} | ${fmt(r.raw)} | ${fmt(r.postage)} | ${r.ratio.toFixed(2)} ± ${r.spread.toFixed(2)} | ${target} | ${met === undefined ? '—' : met ? 'yes' : '**no**'} |`);
    }
    if (o.failure !== undefined) lines.push(`| ${name} | **FAILED** | | | | | | ${o.failure.replaceAll('|', '/')} |`);
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

const filters = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.js'))
  .filter((f) => filters.length === 0 || filters.some((name) => f.includes(name)))
  .sort();
if (files.length === 0) {
  process.stderr.write(`no *.bench.js in ${here} matches ${filters.join(', ') || '(all)'}; run \`npm run build\` first\n`);
  process.exit(1);
}

const cpus = os.cpus();
const facts = [
  `cpus: ${os.availableParallelism()} × ${cpus[0]?.model.trim() ?? 'unknown'}`,
  `node ${process.version}, RabbitMQ ${await brokerVersion()}, ${os.type()} ${os.release()}`,
  `load average at start: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
];
process.stderr.write(`${facts.join('\n')}\n`);

const outcomes: Outcome[] = [];
for (const file of files) {
  process.stderr.write(`\n${file}\n`);
  const outcome = await runBench(file);
  process.stderr.write(`  ${outcome.failure === undefined ? 'done' : 'FAILED'} in ${outcome.seconds.toFixed(1)} s\n`);
  outcomes.push(outcome);
}
facts.push(`load average at end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);

process.stdout.write(`\n${facts.join('\n')}\n\n${table(outcomes)}\n\nratio: median of per-round postage/raw ratios, ± half their interquartile range.\n`);
process.exitCode = outcomes.some((o) => o.failure !== undefined) ? 1 : 0;
