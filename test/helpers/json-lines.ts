/**
 * What the test helpers that watch something share: a child process that writes one JSON
 * object per stdout line (the daemon's log, the Python peer's events), and waiting until
 * enough of what it wrote matches.
 */
import type { ChildProcess } from 'node:child_process';

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface WaitOptions {
  /** How many matches to wait for (default 1). */
  count?: number;
  timeout?: number;
}

/** Callbacks to run again whenever something new arrived. */
export class Waiters {
  private readonly pending = new Set<() => void>();

  notify(): void {
    for (const check of [...this.pending]) check();
  }

  /**
   * Resolves with the `count`-th item of `found()` once there are that many, checking now and
   * at every notify(); rejects with `gaveUp()` as soon as it names a reason (the process
   * exited), or with `late()` after `timeout` ms.
   */
  until<T>(found: () => readonly T[], count: number, timeout: number, late: () => string, gaveUp: () => string | undefined = () => undefined): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const items = found();
        if (items.length >= count) {
          done();
          resolve(items[count - 1]!);
          return;
        }
        const reason = gaveUp();
        if (reason !== undefined) {
          done();
          reject(new Error(reason));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(late()));
      }, timeout);
      const done = (): void => {
        clearTimeout(timer);
        this.pending.delete(check);
      };
      this.pending.add(check);
      check();
    });
  }
}

/** A child process writing JSON lines: what it wrote (parsed), its stderr, its exit. */
export class JsonLinesProcess<T> {
  /** The parsed stdout lines, in order. */
  readonly items: T[] = [];
  /** stdout lines that are not JSON. */
  readonly otherLines: string[] = [];
  stderr = '';
  exit: Exit | undefined;
  readonly exited: Promise<Exit>;
  protected readonly waiters = new Waiters();

  constructor(
    readonly child: ChildProcess,
    readonly label: string,
    parse: (value: unknown) => T = (value) => value as T,
  ) {
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
          this.items.push(parse(JSON.parse(line)));
        } catch {
          this.otherLines.push(line);
        }
      }
      this.waiters.notify();
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      this.stderr += chunk;
      this.waiters.notify();
    });
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        this.waiters.notify();
        resolve(this.exit);
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The last lines and stderr, for failure messages. */
  tail(n = 12): string {
    const lines = this.items.slice(-n).map((item) => JSON.stringify(item, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)).slice(0, 600));
    return `last lines:\n${lines.join('\n')}${this.otherLines.length > 0 ? `\nother stdout: ${this.otherLines.slice(-n).join('\n')}` : ''}\nstderr: ${this.stderr.slice(-2000)}`;
  }

  /** Waits until `count` parsed lines match (default 1) and returns the last of them. */
  protected waitForItem(match: (item: T) => boolean, what: string, options: WaitOptions = {}): Promise<T> {
    const count = options.count ?? 1;
    const timeout = options.timeout ?? 15_000;
    return this.waiters.until(
      () => this.items.filter(match),
      count,
      timeout,
      () => `timed out after ${timeout} ms waiting for ${this.label} ${what} x${count}\n${this.tail()}`,
      () => (this.exit ? `${this.label} exited (${JSON.stringify(this.exit)}) before ${what} x${count}\n${this.tail()}` : undefined),
    );
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

  /** The exit, or a rejection with the last lines when the process still runs after `timeout` ms. */
  async waitForExit(timeout = 30_000): Promise<Exit> {
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
}
