/**
 * A stand-in for systemd's notification socket: an AF_UNIX datagram socket bound in a temp
 * folder (through the same native unix-dgram the daemon sends with), recording every datagram
 * with the time it arrived. Closed at teardown.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { Waiters } from './json-lines.js';

interface ServerSocket {
  bind(path: string): void;
  on(event: 'message', listener: (buf: Buffer) => void): void;
  on(event: 'error', listener: (err: Error) => void): void;
  close(): void;
}
const unixDgram = createRequire(import.meta.url)('unix-dgram') as { createSocket(type: 'unix_dgram'): ServerSocket };

export interface Notification {
  /** Milliseconds since the socket was bound. */
  at: number;
  /** The datagram's assignments, e.g. { READY: '1', STATUS: '…' }. */
  fields: Record<string, string>;
}

export class NotifySocket {
  readonly messages: Notification[] = [];
  private readonly t0 = performance.now();
  private readonly waiters = new Waiters();

  private constructor(
    readonly path: string,
    private readonly socket: ServerSocket,
  ) {
    socket.on('message', (buf) => {
      const fields: Record<string, string> = {};
      for (const line of buf.toString('utf8').split('\n')) {
        const eq = line.indexOf('=');
        if (eq > 0) fields[line.slice(0, eq)] = line.slice(eq + 1);
      }
      this.messages.push({ at: performance.now() - this.t0, fields });
      this.waiters.notify();
    });
  }

  static open(t: ExecutionContext): NotifySocket {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'notify-'));
    const file = path.join(dir, 'notify.sock');
    const socket = unixDgram.createSocket('unix_dgram');
    socket.on('error', (err) => t.log(`notify socket error: ${err.message}`));
    socket.bind(file);
    t.teardown(() => {
      socket.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    return new NotifySocket(file, socket);
  }

  /** Messages that set `field` (to `value`, if given). */
  with(field: string, value?: string): Notification[] {
    return this.messages.filter((m) => m.fields[field] !== undefined && (value === undefined || m.fields[field] === value));
  }

  /** Waits until `count` messages set `field` (to `value`); returns the last of them. */
  waitFor(field: string, value: string | undefined, count = 1, timeout = 15_000): Promise<Notification> {
    return this.waiters.until(
      () => this.with(field, value),
      count,
      timeout,
      () => `no ${count}x ${field}=${value ?? '*'} within ${timeout} ms; got: ${JSON.stringify(this.messages.map((m) => m.fields))}`,
    );
  }
}
