/**
 * The Python side of the interop suite: test/interop/peer.py (a Python Postage 1.2.1 peer on
 * Debian's python3-pika) spawned against a test's vhost, as an application (`app`) or a
 * producer driven over stdin (`client`). Both speak JSON lines; values JSON cannot carry
 * (NaN, ±Infinity, integers beyond 2^53) are marked `{"$float": …}` / `{"$int": …}` and
 * converted here. Every process is killed at teardown.
 *
 * python3-pika is installed with apt-get when missing. Under CI=true a peer that cannot run
 * fails its tests; locally they are skipped, saying why.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { BROKER_HOST, BROKER_PORT, brokerReachable } from './broker.js';
import { ROOT } from './spawn.js';

const run = promisify(execFile);

/** Debian's interpreter: the python3 first on PATH may be another one, without pika. */
export const PYTHON = '/usr/bin/python3';
export const PEER = path.join(ROOT, 'test', 'interop', 'peer.py');

const CI = process.env['CI'] === 'true';

async function hasPika(): Promise<boolean> {
  try {
    await run(PYTHON, ['-c', 'import pika'], { timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
}

async function aptGet(...args: string[]): Promise<void> {
  // Several test files (worker processes) may get here at once: wait for dpkg's lock.
  await run('apt-get', ['-o', 'DPkg::Lock::Timeout=300', ...args], {
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive', PATH: `${process.env['PATH']}:/usr/sbin:/sbin` },
    timeout: 600_000,
    maxBuffer: 64 * 1024 * 1024,
  });
}

/** Makes sure `/usr/bin/python3 -c 'import pika'` works, installing python3-pika if needed. */
async function ensurePika(): Promise<{ ok: true } | { ok: false; reason: string }> {
  if (await hasPika()) return { ok: true };
  const errors: string[] = [];
  for (const step of [['install', '-y', 'python3-pika'], ['update'], ['install', '-y', 'python3-pika']]) {
    try {
      await aptGet(...step);
      if (step[0] === 'install' && (await hasPika())) return { ok: true };
    } catch (err) {
      errors.push(`apt-get ${step.join(' ')}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  return { ok: false, reason: `${PYTHON} cannot import pika and python3-pika could not be installed (${errors.join('; ') || 'installed, still not importable'})` };
}

export const python = brokerReachable || CI ? await ensurePika() : { ok: false as const, reason: 'no broker' };
if (!python.ok && !CI && brokerReachable) console.warn(`interop tests skipped: ${python.reason} (set CI=true to fail instead)`);

/**
 * `test` when the broker and the Python peer can run, or under CI (where a missing peer must
 * fail, not skip); `test.skip` otherwise.
 */
export const peerTest: TestFn = (brokerReachable && python.ok) || CI ? anyTest : (anyTest.skip as unknown as TestFn);

/** A value as the peer writes it, with NaN, ±Infinity and big integers restored. */
export function unmark(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(unmark);
  if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1 && keys[0] === '$float') return Number(o['$float']);
    if (keys.length === 1 && keys[0] === '$int') return BigInt(String(o['$int']));
    return Object.fromEntries(keys.map((k) => [k, unmark(o[k])]));
  }
  return value;
}

/** A value for the peer: NaN, ±Infinity and bigints marked so that JSON can carry them. */
export function markForPeer(value: unknown): unknown {
  if (typeof value === 'number' && !Number.isFinite(value)) return { $float: Number.isNaN(value) ? 'NaN' : value > 0 ? 'Infinity' : '-Infinity' };
  if (typeof value === 'bigint') return { $int: value.toString() };
  if (Array.isArray(value)) return value.map(markForPeer);
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, markForPeer(v)]));
  return value;
}

export type PeerEvent = Record<string, unknown> & { event?: string };

export interface PeerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** The environment of a peer: the broker and vhost of the test, Python Postage's variable names. */
function peerEnv(vhost: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('POSTAGE_') && k !== 'PEER_GENERATION'));
  return { ...env, POSTAGE_VHOST: vhost, POSTAGE_USER: 'guest', POSTAGE_PASSWORD: 'guest', POSTAGE_HOST: BROKER_HOST, POSTAGE_PORT: String(BROKER_PORT) };
}

/** One peer process: its JSON-line events, stderr, exit, and waiting for an event. */
export class PeerProcess {
  readonly events: PeerEvent[] = [];
  stderr = '';
  exit: PeerExit | undefined;
  readonly exited: Promise<PeerExit>;
  private readonly waiters = new Set<() => void>();

  constructor(readonly child: ChildProcess, readonly label: string) {
    let buffer = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      buffer += chunk;
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line.trim() === '') continue;
        try {
          this.events.push(unmark(JSON.parse(line)) as PeerEvent);
        } catch {
          this.stderr += `(stdout) ${line}\n`;
        }
      }
      this.notify();
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      this.stderr += chunk;
      this.notify();
    });
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        this.notify();
        resolve(this.exit);
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  find(match: string | ((e: PeerEvent) => boolean)): PeerEvent[] {
    const pred = typeof match === 'string' ? (e: PeerEvent) => e.event === match : match;
    return this.events.filter(pred);
  }

  /** Waits until `count` events match (default 1) and returns the last of them. */
  waitForEvent(match: string | ((e: PeerEvent) => boolean), options: { count?: number; timeout?: number } = {}): Promise<PeerEvent> {
    const count = options.count ?? 1;
    const timeout = options.timeout ?? 20_000;
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = this.find(match);
        if (found.length >= count) {
          done();
          resolve(found[count - 1]!);
        } else if (this.exit) {
          done();
          reject(new Error(`${this.label} exited (${JSON.stringify(this.exit)}) before event ${String(match)} x${count}\n${this.tail()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeout} ms waiting for ${this.label} event ${String(match)} x${count}\n${this.tail()}`));
      }, timeout);
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  tail(n = 8): string {
    return `last events:\n${this.events
      .slice(-n)
      .map((e) => JSON.stringify(e, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)).slice(0, 600))
      .join('\n')}\nstderr: ${this.stderr.slice(-2000)}`;
  }

  /** The exit, or a rejection with the last events when the process is still running after `timeout` ms. */
  async waitForExit(timeout = 30_000): Promise<PeerExit> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.label} still running after ${timeout} ms\n${this.tail()}`)), timeout);
    });
    try {
      return await Promise.race([this.exited, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 5000): Promise<PeerExit> {
    if (this.exit) return this.exit;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    const exit = await this.exited;
    clearTimeout(timer);
    return exit;
  }
}

function spawnPeer<P extends PeerProcess>(t: ExecutionContext, vhost: string, args: string[], wrap: (child: ChildProcess) => P): P {
  if (!python.ok) throw new Error(`the Python peer cannot run: ${python.reason}`);
  const child = spawn(PYTHON, [PEER, ...args], { cwd: ROOT, env: peerEnv(vhost), stdio: ['pipe', 'pipe', 'pipe'] });
  const peer = wrap(child);
  t.teardown(async () => {
    if (!peer.exit) {
      child.kill('SIGKILL');
      await peer.exited;
    }
  });
  return peer;
}

export interface PythonAppOptions {
  name: string;
  /** The fingerprint's host (Python: socket.gethostname()). */
  host?: string;
  groups?: readonly string[];
}

/** A Python GenericApplication: queues `N`, `N@H` and `P@H`, all auto-delete. */
export class PythonApp extends PeerProcess {
  readonly name: string;
  readonly host: string;

  constructor(child: ChildProcess, options: PythonAppOptions, host: string) {
    super(child, `python app ${options.name}`);
    this.name = options.name;
    this.host = host;
  }

  /** `P@H`: Python's unique queue, and the key bound to it. */
  get uniqueKey(): string {
    return `${this.pid}@${this.host}`;
  }

  /** The generation of the last `ready` (1, then +1 per restart: same PID, re-exec'd). */
  get generation(): number {
    return Number(this.find('ready').at(-1)?.['generation'] ?? 0);
  }

  /** Deliveries of a command name, in arrival order. */
  deliveries(name?: string): PeerEvent[] {
    return this.find((e) => e.event === 'delivery' && (name === undefined || (e['body'] as { name?: string } | undefined)?.name === name));
  }
}

/** Spawns a Python application without waiting for it (e.g. to watch it being refused). */
export function spawnPythonApp(t: ExecutionContext, vhost: string, options: PythonAppOptions): PythonApp {
  const host = options.host ?? `py-${randomUUID().slice(0, 6)}`;
  const args = ['app', '--name', options.name, '--host', host, ...(options.groups ?? []).flatMap((g) => ['--group', g])];
  return spawnPeer(t, vhost, args, (child) => new PythonApp(child, options, host));
}

/** Starts a Python application; resolves once it consumes (rejects with what it printed if it exits). */
export async function startPythonApp(t: ExecutionContext, vhost: string, options: PythonAppOptions): Promise<PythonApp> {
  const app = spawnPythonApp(t, vhost, options);
  await app.waitForEvent('ready', { timeout: 30_000 });
  return app;
}

/** What a Python `producer.rpc_<name>(...)` returned, and how. */
export interface PythonRpcResult {
  /** Python's truthiness of the result (`if reply:`). */
  ok: boolean;
  /** The result body as Python rebuilt it (MessageResult / Error / Exception). */
  result: { content: { type: string; value: unknown; message: string } } & Record<string, unknown>;
  /** `result.content.value`. */
  value: unknown;
  /** The reply body exactly as it arrived (null when every try timed out). */
  raw: string | null;
  /** Tries made (1 + retries). */
  tries: number;
  /** The fresh exclusive reply queue of each try. */
  replyQueues: string[];
  /** AMQP properties of the reply. */
  replyProperties: Record<string, unknown> | null;
  ms: number;
}

/** A Python producer (GenericProducer on generic-application-exchange) driven over stdin. */
export class PythonClient extends PeerProcess {
  private nextId = 1;

  private command(command: Record<string, unknown>): Promise<PeerEvent> {
    const id = this.nextId++;
    this.child.stdin!.write(`${JSON.stringify({ ...command, id })}\n`);
    return this.waitForEvent((e) => e['id'] === id, { timeout: 600_000 }).then((e) => {
      if (typeof e['error'] === 'string') throw new Error(`python client: ${e['error']}\n${String(e['traceback'] ?? '')}`);
      return e;
    });
  }

  /** `producer.message_<name>(params, _key=key)`. */
  async send(key: string, name: string, params: unknown = {}): Promise<void> {
    await this.command({ op: 'send', key, name, params: markForPeer(params) });
  }

  /**
   * `producer.rpc_<name>(params, _key=key, _timeout=timeout)`, with the producer's
   * `max_retry` (class attribute; 4 by default, as in 1.2.1, where `_max_retry` was ignored).
   */
  async rpc(key: string, name: string, params: unknown = {}, options: { timeout?: number; maxRetry?: number } = {}): Promise<PythonRpcResult> {
    const e = await this.command({
      op: 'rpc',
      key,
      name,
      params: markForPeer(params),
      ...(options.timeout === undefined ? {} : { timeout: options.timeout }),
      ...(options.maxRetry === undefined ? {} : { max_retry: options.maxRetry }),
    });
    const result = e['result'] as PythonRpcResult['result'];
    return {
      ok: e['ok'] === true,
      result,
      value: result.content.value,
      raw: (e['raw'] as string | null) ?? null,
      tries: Number(e['tries']),
      replyQueues: e['reply_queues'] as string[],
      replyProperties: (e['reply_properties'] as Record<string, unknown> | null) ?? null,
      ms: Number(e['ms']),
    };
  }
}

/** Starts a Python producer process on the vhost. */
export async function startPythonClient(t: ExecutionContext, vhost: string, name = 'python-client'): Promise<PythonClient> {
  const client = spawnPeer(t, vhost, ['client', '--name', name], (child) => new PythonClient(child, `python client ${name}`));
  t.teardown(() => {
    client.child.stdin!.end();
  });
  await client.waitForEvent('ready', { timeout: 30_000 });
  return client;
}
