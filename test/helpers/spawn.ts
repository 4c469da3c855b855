/**
 * Spawns the real `./bin/postaged` (built dist/) as a child process for process tests:
 * its environment points at the test's vhost, its JSON log lines are collected, a test can
 * wait for a line, and teardown always kills it (SIGKILL if SIGTERM is not enough).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { GenericApplicationExchange, GenericProducer, type Connection, type ExchangeKeys } from 'postage';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = path.join(ROOT, 'bin', 'postaged');
export const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'plugins');

/** One parsed JSON log line. */
export type LogLine = Record<string, unknown> & { message: string; level: string; app?: string };

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnOptions {
  /** AMQP URL of the test vhost (POSTAGE_URL). */
  url: string;
  args?: readonly string[];
  env?: Record<string, string | undefined>;
  cwd?: string;
}

export class DaemonProcess {
  readonly lines: LogLine[] = [];
  /** stdout lines that are not JSON (there should be none). */
  readonly otherLines: string[] = [];
  stderr = '';
  readonly exited: Promise<Exit>;
  exit: Exit | undefined;
  private readonly waiters = new Set<() => void>();

  constructor(readonly child: ChildProcess) {
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
          this.lines.push(JSON.parse(line) as LogLine);
        } catch {
          this.otherLines.push(line);
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

  /** Lines matching `match` (message string, or predicate). */
  find(match: string | ((l: LogLine) => boolean)): LogLine[] {
    const pred = typeof match === 'string' ? (l: LogLine) => l.message === match : match;
    return this.lines.filter(pred);
  }

  /** Waits until at least `count` lines match (default 1); returns the last of them. */
  waitForLine(match: string | ((l: LogLine) => boolean), options: { count?: number; timeout?: number } = {}): Promise<LogLine> {
    const count = options.count ?? 1;
    const timeout = options.timeout ?? 15_000;
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = this.find(match);
        if (found.length >= count) {
          done();
          resolve(found[count - 1]!);
        } else if (this.exit) {
          done();
          reject(new Error(`postaged exited (${JSON.stringify(this.exit)}) before log line ${String(match)} x${count}\nstderr: ${this.stderr}\nlast lines: ${this.tail()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeout} ms waiting for log line ${String(match)} x${count}\nstderr: ${this.stderr}\nlast lines: ${this.tail()}`));
      }, timeout);
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** The last log lines, for failure messages. */
  tail(n = 12): string {
    return this.lines
      .slice(-n)
      .map((l) => JSON.stringify(l))
      .join('\n');
  }

  signal(signal: NodeJS.Signals): void {
    if (!this.exit) this.child.kill(signal);
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit. */
  async stop(graceMs = 15_000): Promise<Exit> {
    if (this.exit) return this.exit;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    const exit = await this.exited;
    clearTimeout(timer);
    return exit;
  }
}

/** Spawns `./bin/postaged` with `args`; killed at teardown. */
export function spawnDaemon(t: ExecutionContext, options: SpawnOptions): DaemonProcess {
  const env: Record<string, string | undefined> = {
    ...process.env,
    POSTAGE_URL: options.url,
    POSTAGED_LOG_FORMAT: 'json',
    POSTAGED_STATE: undefined,
    POSTAGED_CONFIG: undefined,
    ...options.env,
  };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  const child = spawn(BIN, [...(options.args ?? [])], { cwd: options.cwd ?? ROOT, env: env as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  const daemon = new DaemonProcess(child);
  t.teardown(async () => {
    if (!daemon.exit) {
      daemon.child.kill('SIGKILL');
      await daemon.exited;
    }
  });
  return daemon;
}

/** Spawns the daemon and waits for its `postaged ready` line. */
export async function startDaemon(t: ExecutionContext, options: SpawnOptions): Promise<DaemonProcess> {
  const daemon = spawnDaemon(t, options);
  await daemon.waitForLine('postaged ready', { timeout: 30_000 });
  return daemon;
}

/** A temporary folder removed at teardown. */
export function tempDir(t: ExecutionContext, prefix = 'postaged-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A plugin folder (under the OS temp dir) holding copies of the named fixture plugins. */
export function pluginFolder(t: ExecutionContext, fixtures: readonly string[]): string {
  const dir = path.join(tempDir(t), 'plugins');
  fs.mkdirSync(dir);
  for (const f of fixtures) fs.copyFileSync(path.join(FIXTURES, f), path.join(dir, path.basename(f)));
  return dir;
}

/** A producer on the generic application exchange, to talk to the daemon's applications. */
export function controlProducer(connection: Connection): GenericProducer {
  class Control extends GenericProducer {
    static override eks: ExchangeKeys = [[GenericApplicationExchange, 'postaged']];
  }
  return new Control({ connection, fingerprint: { name: 'test-control', type: 'test' } });
}

/** `pid@host` of a daemon, as addresses use it. */
export function processKey(daemon: DaemonProcess): string {
  const ready = daemon.find('postaged ready')[0];
  return `${daemon.pid}@${String(ready?.['host'] ?? os.hostname())}`;
}
