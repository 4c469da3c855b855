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
import { JsonLinesProcess, type WaitOptions } from './json-lines.js';
import { GenericApplicationExchange, GenericProducer, type Connection, type ExchangeKeys } from 'postage';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = path.join(ROOT, 'bin', 'postaged');
export const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'plugins');

/** One parsed JSON log line. */
export type LogLine = Record<string, unknown> & { message: string; level: string; app?: string };

export type { Exit } from './json-lines.js';

export interface SpawnOptions {
  /** AMQP URL of the test vhost (POSTAGE_URL). */
  url: string;
  args?: readonly string[];
  env?: Record<string, string | undefined>;
  cwd?: string;
}

/** A running postaged: its JSON log lines, stderr and exit. */
export class DaemonProcess extends JsonLinesProcess<LogLine> {
  constructor(child: ChildProcess) {
    super(child, 'postaged');
  }

  get lines(): readonly LogLine[] {
    return this.items;
  }

  /** Lines matching `match` (message string, or predicate). */
  find(match: string | ((l: LogLine) => boolean)): LogLine[] {
    return this.items.filter(typeof match === 'string' ? (l) => l.message === match : match);
  }

  /** Waits until at least `count` lines match (default 1); returns the last of them. */
  waitForLine(match: string | ((l: LogLine) => boolean), options: WaitOptions = {}): Promise<LogLine> {
    return this.waitForItem(typeof match === 'string' ? (l) => l.message === match : match, `log line ${String(match)}`, options);
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
