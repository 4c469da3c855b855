/**
 * A real `./bin/postaged` (the built dist/) for the benches that measure the daemon: spawned
 * with its JSON log on stdout, a plugin folder under the OS temp dir, pointed at the bench's
 * vhost; its memory and CPU read from /proc; stopped with SIGTERM (SIGKILL if it hangs).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from './helpers.js';

/** One parsed JSON log line of the daemon. */
export type LogLine = Record<string, unknown> & { message: string };

const CLOCK_TICKS_PER_S = 100; // USER_HZ: 100 on every Linux this runs on (getconf CLK_TCK)

export interface DaemonOptions {
  url: string;
  /** More environment (e.g. `POSTAGED_PREFETCH`). */
  env?: Record<string, string>;
  /**
   * Node flags for the daemon (e.g. `--cpu-prof`), kept by every re-exec'd generation (the
   * daemon re-execs node's flags too). Default: BENCH_DAEMON_NODE_ARGS, split on spaces.
   */
  nodeArgs?: readonly string[];
}

/** Resident set size of a process, in bytes (0 when it is gone). */
export function rssOf(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** The pids of a process's children (every thread's children). */
export function childrenOf(pid: number): number[] {
  const found: number[] = [];
  try {
    for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
      const text = fs.readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      if (text) found.push(...text.split(/\s+/).map(Number));
    }
  } catch {
    // gone
  }
  return found;
}

/** The command name of a process (`node`, `esbuild`…). */
export function commOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}

/** User + system CPU time of a process so far, in µs (10 ms resolution). */
export function cpuOf(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces), from field 3 on: utime is 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLOCK_TICKS_PER_S;
}

export class BenchDaemon {
  readonly lines: LogLine[] = [];
  readonly pluginDir: string;
  private stderr = '';
  private exit: string | undefined;
  private readonly exited: Promise<void>;
  private readonly waiters = new Set<() => void>();

  private constructor(private readonly child: ChildProcess, pluginDir: string) {
    this.pluginDir = pluginDir;
    let buffer = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buffer += chunk;
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        try {
          this.lines.push(JSON.parse(line) as LogLine);
        } catch {
          // not a log line
        }
      }
      this.notify();
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-4000);
    });
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exit = `exit ${code ?? signal}`;
        this.notify();
        resolve();
      }),
    );
  }

  /** Spawns a daemon on a new, empty plugin folder (fill it with `write` before `ready`, or after: hot-load). */
  static spawn(options: DaemonOptions, files: Record<string, string> = {}): BenchDaemon {
    const pluginDir = fs.mkdtempSync(path.join(os.tmpdir(), 'postage-bench-plugins-'));
    for (const [name, source] of Object.entries(files)) fs.writeFileSync(path.join(pluginDir, name), source);
    const env: NodeJS.ProcessEnv = { ...process.env, POSTAGE_URL: options.url, POSTAGED_LOG_FORMAT: 'json', ...options.env };
    delete env['POSTAGED_STATE'];
    delete env['POSTAGED_CONFIG'];
    delete env['NODE_OPTIONS'];
    // BENCH_DAEMON_NODE_ARGS profiles every daemon a bench starts, e.g. `--cpu-prof
    // --cpu-prof-dir=/tmp/prof` (NODE_OPTIONS refuses --cpu-prof; a generation writes its
    // profile when it exits, not when it re-execs).
    const nodeArgs = options.nodeArgs ?? (process.env['BENCH_DAEMON_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
    const child = spawn(process.execPath, [...nodeArgs, path.join(ROOT, 'bin', 'postaged'), '--plugins', pluginDir], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    return new BenchDaemon(child, pluginDir);
  }

  get pid(): number {
    return this.child.pid!;
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Lines whose message is `message`. */
  find(message: string): LogLine[] {
    return this.lines.filter((l) => l.message === message);
  }

  /** Waits until `count` lines in all say `message`. */
  waitForLine(message: string, count = 1, timeoutMs = 60_000): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = this.find(message);
        if (found.length >= count) {
          done();
          resolve(found[count - 1]!);
        } else if (this.exit) {
          done();
          reject(new Error(`postaged ended (${this.exit}) before log line "${message}" x${count}; stderr: ${this.stderr.slice(-800)}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`postaged: no log line "${message}" x${count} within ${timeoutMs} ms; last lines: ${this.lines.slice(-5).map((l) => JSON.stringify(l)).join(' ')}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Waits for the first `postaged ready`. */
  async ready(timeoutMs = 60_000): Promise<this> {
    await this.waitForLine('postaged ready', 1, timeoutMs);
    return this;
  }

  /** Writes a plugin file so that it appears at once (written under a hidden name, then renamed). */
  write(name: string, source: string): string {
    const file = path.join(this.pluginDir, name);
    const hidden = path.join(this.pluginDir, `.${name}.tmp`);
    fs.writeFileSync(hidden, source);
    fs.renameSync(hidden, file);
    return file;
  }

  remove(name: string): void {
    fs.rmSync(path.join(this.pluginDir, name), { force: true });
  }

  /** The daemon's RSS in bytes. */
  rss(): number {
    return rssOf(this.pid);
  }

  /** Its children's RSS (e.g. esbuild's service process), by command name. */
  childrenRss(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const pid of childrenOf(this.pid)) out[commOf(pid)] = (out[commOf(pid)] ?? 0) + rssOf(pid);
    return out;
  }

  /** CPU time of the daemon so far, µs. */
  cpu(): number {
    return cpuOf(this.pid);
  }

  /** SIGTERM, SIGKILL after `graceMs`; removes the plugin folder. */
  async stop(graceMs = 15_000): Promise<void> {
    if (!this.exit) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    fs.rmSync(this.pluginDir, { recursive: true, force: true });
  }
}
