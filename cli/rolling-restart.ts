/**
 * `postage restart <key> --rolling`: restarts the daemons that host what a key reaches, a few
 * at a time, each through one application instance of its own (`N:P@H`), and goes on only once
 * each of them answers again from a new generation. The first one that does not come back stops
 * the roll: the rest keep running their old code, and the report says which were done.
 *
 * Discovery: a `ping` on the key (who is there), and a `status` on every daemon (its name and
 * generation). A daemon is restarted once, however many of its applications the key reaches;
 * only postaged daemons can be rolled (a plain application has no generation to wait for).
 */
import { DAEMON_DISCOVERY_KEY, type MessageResult } from 'postage';
import { asDaemonStatus, type DaemonStatus } from './daemon-status.js';
import { CliError, ExitCode, type ExitCodeValue } from './exit-codes.js';
import { json, safe, showFailure, type Output } from './output.js';
import type { Session } from './session.js';

export interface RollingOptions {
  /** Seconds each batch has to come back (new generation, application answering). */
  timeout: number;
  /** Daemons restarted at the same time. */
  maxUnavailable: number;
  /** Instances expected: discovery ends once that many answered; fewer is exit 3. */
  expect?: number;
  /** Seconds to collect the answers of discovery. */
  discover: number;
  json: boolean;
}

/** One daemon to restart: the instance key it is restarted through, and where it stood. */
export interface Target {
  key: string;
  pid: number;
  host: string;
  daemon: string;
  generation: number;
}

export interface Step {
  key: string;
  daemon: string;
  ok: boolean;
  fromGeneration: number;
  toGeneration?: number;
  ms: number;
  error?: string;
}

const fingerprintOf = (r: MessageResult): Record<string, unknown> => (r.value !== null && typeof r.value === 'object' ? (r.value as Record<string, unknown>) : {});

/** Which daemons a key reaches, each once, in a stable order (host, then PID). */
export async function discover(session: Session, key: string, options: Pick<RollingOptions, 'discover' | 'expect'>): Promise<{ targets: Target[]; plain: string[] }> {
  const pings = (await session.collect(key, 'ping', {}, { timeout: options.discover, ...(options.expect === undefined ? {} : { expect: options.expect }) })).filter((r) => r.ok);
  const byProcess = new Map<string, { name: string; pid: number; host: string }>();
  for (const r of pings) {
    const f = fingerprintOf(r);
    const [name, pid, host] = [String(f['name'] ?? ''), Number(f['pid']), String(f['host'] ?? '')];
    if (!name || !Number.isInteger(pid) || !host) continue;
    const id = `${pid}@${host}`;
    // Several applications of one daemon: one restart, through the first that answered.
    if (!byProcess.has(id)) byProcess.set(id, { name, pid, host });
  }
  if (byProcess.size === 0) return { targets: [], plain: [] };
  // Every daemon's own application listens on the discovery key: one RPC for all generations.
  const statuses = (await session.collect(DAEMON_DISCOVERY_KEY, 'status', {}, { timeout: options.discover }))
    .filter((r) => r.ok)
    .map((r) => asDaemonStatus(r.value))
    .filter((s): s is DaemonStatus => s !== undefined);
  const targets: Target[] = [];
  const plain: string[] = [];
  for (const [id, app] of byProcess) {
    const status = statuses.find((s) => `${s.pid}@${s.host}` === id);
    if (!status || !Number.isFinite(status.generation)) plain.push(`${app.name}:${id}`);
    else targets.push({ key: `${app.name}:${id}`, pid: app.pid, host: app.host, daemon: status.name, generation: status.generation });
  }
  targets.sort((a, b) => a.host.localeCompare(b.host) || a.pid - b.pid);
  return { targets, plain };
}

/** The generation the daemon of `target` answers with now (undefined: no answer within a second). */
async function generationOf(session: Session, target: Target): Promise<number | undefined> {
  const [reply] = await session.collect(`${target.daemon}:${target.pid}@${target.host}`, 'status', {}, { timeout: 1, expect: 1 });
  return reply?.ok ? asDaemonStatus(reply.value)?.generation : undefined;
}

/** Restarts one daemon and waits until it runs a newer generation and its application answers. */
async function restartOne(session: Session, target: Target, timeoutMs: number): Promise<Step> {
  const t0 = performance.now();
  const step = (ok: boolean, extra: Partial<Step> = {}): Step => ({ key: target.key, daemon: `${target.daemon}:${target.pid}@${target.host}`, ok, fromGeneration: target.generation, ms: Math.round(performance.now() - t0), ...extra });
  if (!(await session.command(target.key, 'restart', {}))) return step(false, { error: `no queue is bound to ${target.key} any more` });
  const deadline = t0 + timeoutMs;
  let generation: number | undefined;
  while (performance.now() < deadline) {
    generation = await generationOf(session, target);
    if (generation !== undefined && generation > target.generation) {
      // The daemon is back; is the application the key named consuming again?
      const [pong] = await session.collect(target.key, 'ping', {}, { timeout: Math.max(0.1, Math.min(2, (deadline - performance.now()) / 1000)), expect: 1 });
      if (pong?.ok) return step(true, { toGeneration: generation });
      if (pong) return step(false, { toGeneration: generation, error: showFailure(pong) });
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return step(false, { ...(generation === undefined ? {} : { toGeneration: generation }), error: `no answer from a new generation within ${timeoutMs / 1000} s` });
}

/** Runs the roll and reports each step; returns the exit code. */
export async function rollingRestart(session: Session, key: string, options: RollingOptions, output: Output): Promise<ExitCodeValue> {
  const { targets, plain } = await discover(session, key, options);
  if (plain.length > 0) throw new CliError(ExitCode.ERROR, safe(`not hosted by a postaged daemon (no generation to wait for): ${plain.join(', ')}`));
  if (targets.length === 0) {
    output.err(`postage: nothing answered ping on key '${key}' within ${options.discover} s: nothing to restart\n`);
    return ExitCode.NO_REPLY;
  }
  if (options.expect !== undefined && targets.length < options.expect) {
    output.err(`postage: only ${targets.length} of ${options.expect} expected daemons answered on key '${key}': nothing restarted\n`);
    return ExitCode.NO_REPLY;
  }
  // Keys and errors come from remote fingerprints and replies: no control characters reach the terminal.
  const say = (text: string): void => {
    if (!options.json) output.out(safe(text));
  };
  say(`rolling restart of ${targets.length} daemon${targets.length === 1 ? '' : 's'} through '${key}', ${options.maxUnavailable} at a time\n`);
  const steps: Step[] = [];
  let failed = false;
  for (let i = 0; i < targets.length && !failed; i += options.maxUnavailable) {
    const batch = targets.slice(i, i + options.maxUnavailable);
    const done = await Promise.all(batch.map((target) => restartOne(session, target, options.timeout * 1000)));
    done.forEach((s, j) => {
      steps.push(s);
      const n = `[${i + j + 1}/${targets.length}]`;
      if (s.ok) say(`${n} ${s.key}: generation ${s.fromGeneration} -> ${s.toGeneration}, answering after ${(s.ms / 1000).toFixed(1)} s\n`);
      else output.err(safe(`postage: ${n} ${s.key}: ${s.error}\n`));
    });
    failed = done.some((s) => !s.ok);
  }
  const restarted = steps.filter((s) => s.ok).length;
  const notTried = targets.slice(steps.length).map((t) => t.key);
  if (options.json) output.out(json({ key, ok: !failed, restarted, steps, notTried }));
  else if (failed) output.err(safe(`postage: rolling restart stopped: ${restarted} of ${targets.length} restarted${notTried.length > 0 ? `, not tried: ${notTried.join(', ')}` : ''}\n`));
  else say(`done: ${restarted} of ${targets.length} restarted\n`);
  return failed ? ExitCode.NO_REPLY : ExitCode.OK;
}
