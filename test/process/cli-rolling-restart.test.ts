/**
 * `postage restart N --rolling` against three real daemons (three hosts): one at a time through
 * each instance key, each waited for until it answers from a new generation; batches with
 * --max-unavailable; the roll stops at the first daemon that does not come back.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import type { ExecutionContext } from 'ava';
import { brokerTest, freshVhost } from '../helpers/broker.js';
import { pluginFolder, ROOT, startDaemon, type DaemonProcess, type LogLine } from '../helpers/spawn.js';

const POSTAGE = `${ROOT}/bin/postage`;
const HOSTS = ['roll-a', 'roll-b', 'roll-c'];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function postage(url: string, args: readonly string[]): Promise<Run> {
  const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('POSTAGE_'))), POSTAGE_URL: url };
  const t0 = performance.now();
  return new Promise((resolve) => {
    execFile(POSTAGE, [...args], { env, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr, ms: performance.now() - t0 });
    });
  });
}

/** Three daemons (hosts roll-a, roll-b, roll-c), each with its own plugin folder; no watcher. */
async function threeDaemons(t: ExecutionContext, url: string): Promise<{ daemons: DaemonProcess[]; folders: string[] }> {
  const folders = HOSTS.map(() => pluginFolder(t, ['echo-mjs.mjs']));
  const daemons = await Promise.all(HOSTS.map((h, i) => startDaemon(t, { url, args: ['--plugins', folders[i]!, '--host', h], env: { POSTAGED_WATCH: 'false' } })));
  return { daemons, folders };
}

const at = (line: LogLine | undefined): number => Date.parse(String(line?.['timestamp']));

brokerTest('--rolling restarts the three daemons one at a time, each back on a new generation before the next', async (t) => {
  const { url } = await freshVhost(t, 'cli-rolling');
  const { daemons } = await threeDaemons(t, url);
  const run = await postage(url, ['restart', 'echo-mjs', '--rolling', '--expect', '3', '--json']);
  t.is(run.code, 0, run.stderr);
  t.log(`rolling restart of 3 daemons: ${run.ms.toFixed(0)} ms (discovery included)`);
  const report = JSON.parse(run.stdout) as { ok: boolean; restarted: number; notTried: string[]; steps: Array<{ key: string; ok: boolean; fromGeneration: number; toGeneration: number; ms: number }> };
  t.like(report, { ok: true, restarted: 3, notTried: [] });
  t.deepEqual(
    report.steps.map((s) => s.key),
    daemons.map((d, i) => `echo-mjs:${d.pid}@${HOSTS[i]}`),
    'each through its own instance key, in host order',
  );
  for (const s of report.steps) t.like(s, { ok: true, fromGeneration: 1, toGeneration: 2 });
  t.log(`steps (ms): ${report.steps.map((s) => s.ms).join(', ')}`);
  for (const d of daemons) {
    t.is(d.find('postaged ready').length, 2, 'restarted exactly once');
    t.is(d.find('postaged ready')[1]?.['pid'], d.pid, 'in place');
  }
  // One at a time: each daemon starts restarting only after the previous one is ready again.
  for (let i = 1; i < daemons.length; i++) {
    const previousReady = at(daemons[i - 1]!.find('postaged ready')[1]);
    const thisRestarting = at(daemons[i]!.find('restarting')[0]);
    t.true(thisRestarting >= previousReady, `${HOSTS[i]} began restarting ${thisRestarting - previousReady} ms after ${HOSTS[i - 1]} was ready`);
  }
});

brokerTest('--max-unavailable 2: two at a time, the third after both are back; each step reported', async (t) => {
  const { url } = await freshVhost(t, 'cli-rolling');
  const { daemons } = await threeDaemons(t, url);
  const run = await postage(url, ['restart', 'echo-mjs', '--rolling', '--max-unavailable', '2', '--expect', '3']);
  t.is(run.code, 0, run.stderr);
  const lines = run.stdout.trim().split('\n');
  t.log(run.stdout.trim());
  t.regex(lines[0] ?? '', /^rolling restart of 3 daemons through 'echo-mjs', 2 at a time$/);
  for (let i = 0; i < 3; i++) t.regex(lines[i + 1] ?? '', new RegExp(`^\\[${i + 1}/3\\] echo-mjs:${daemons[i]!.pid}@${HOSTS[i]}: generation 1 -> 2, answering after \\d+\\.\\d s$`));
  t.is(lines[4], 'done: 3 of 3 restarted');
  const [a, b, c] = daemons as [DaemonProcess, DaemonProcess, DaemonProcess];
  t.true(at(b.find('restarting')[0]) < at(a.find('postaged ready')[1]), 'a and b restarted together');
  t.true(at(c.find('restarting')[0]) >= Math.max(at(a.find('postaged ready')[1]), at(b.find('postaged ready')[1])), 'c only after both were back');
});

brokerTest('the roll stops at the first daemon that does not come back: exit 3, the rest untouched and named', async (t) => {
  const { url } = await freshVhost(t, 'cli-rolling');
  const { daemons, folders } = await threeDaemons(t, url);
  // roll-b's next generation cannot start: its plugin folder is gone (exit 78 on re-exec).
  fs.rmSync(folders[1]!, { recursive: true, force: true });
  // 20 s a daemon: roll-a's re-exec took up to 7 s on a loaded machine, close to the 10 s this had.
  const run = await postage(url, ['restart', 'echo-mjs', '--rolling', '--timeout', '20']);
  t.is(run.code, 3, run.stderr);
  t.log(run.stdout.trim());
  t.log(run.stderr.trim());
  const [a, b, c] = daemons as [DaemonProcess, DaemonProcess, DaemonProcess];
  t.regex(run.stdout, new RegExp(`\\[1/3\\] echo-mjs:${a.pid}@roll-a: generation 1 -> 2`));
  t.regex(run.stderr, new RegExp(`\\[2/3\\] echo-mjs:${b.pid}@roll-b: no answer from a new generation within 20 s`));
  t.regex(run.stderr, new RegExp(`rolling restart stopped: 1 of 3 restarted, not tried: echo-mjs:${c.pid}@roll-c`));
  t.is(a.find('postaged ready').length, 2);
  t.deepEqual(await b.exited, { code: 78, signal: null }, "roll-b's new generation failed on its configuration");
  t.is(c.find('restarting').length, 0, 'roll-c was not restarted');
});

brokerTest('--rolling refuses a round-robin key, and the rolling options without --rolling (exit 2)', async (t) => {
  const url = 'amqp://guest:guest@127.0.0.1:5672/%2F';
  const rr = await postage(url, ['restart', 'echo-mjs/rr', '--rolling']);
  t.is(rr.code, 2);
  t.regex(rr.stderr, /--rolling needs a key that reaches every instance/);
  const bare = await postage(url, ['restart', 'echo-mjs', '--max-unavailable', '2']);
  t.is(bare.code, 2);
  t.regex(bare.stderr, /go with --rolling/);
});
