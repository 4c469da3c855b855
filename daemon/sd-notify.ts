/**
 * systemd's service notification protocol (sd_notify(3)), for `Type=notify` units: READY=1
 * once every plugin consumes, RELOADING=1 … READY=1 around each in-place re-exec, STOPPING=1,
 * a STATUS= line, and WATCHDOG=1 pings for `WatchdogSec=`.
 *
 * The protocol is one datagram on the AF_UNIX socket named by `NOTIFY_SOCKET`. Node has no
 * AF_UNIX datagram sockets, so the native `unix-dgram` does the sendto(2) (a few lines of C++
 * over the system calls; maintained, and widely used). The `systemd-notify` tool was not
 * chosen: systemd (252 here) attributes a notification by reading the sender's cgroup, and
 * a short-lived `systemd-notify` child can exit before that, so its message is dropped; it
 * would also cost a process per watchdog ping. Sent from the main process itself, every
 * message is accepted with the unit's default `NotifyAccess=main`, and after a re-exec the
 * PID, and so the sender, is the same.
 *
 * Without `NOTIFY_SOCKET` (not under systemd, or `Type=exec`) nothing here does anything.
 */
import { createRequire } from 'node:module';
import type { Logger } from 'postage';
import type { Phase } from './daemon.js';

/** The part of unix-dgram's socket used here. */
interface DgramSocket {
  send(buf: Buffer, offset: number, length: number, path: string, callback: (err?: Error) => void): void;
  on(event: 'error', listener: (err: Error) => void): void;
  close(): void;
}
type UnixDgram = { createSocket(type: 'unix_dgram'): DgramSocket };

/** What the notifier reads from the environment systemd gives the service. */
export interface NotifyEnvironment {
  NOTIFY_SOCKET?: string | undefined;
  WATCHDOG_USEC?: string | undefined;
  WATCHDOG_PID?: string | undefined;
}

export class SystemdNotifier {
  private watchdog: NodeJS.Timeout | undefined;
  private failed = false;

  private constructor(
    /** The socket's path. */
    readonly path: string,
    /** Microseconds between two WATCHDOG=1 before systemd acts; 0 when no watchdog is asked for. */
    readonly watchdogUsec: number,
    private readonly log: Pick<Logger, 'warn'>,
    private readonly load: () => UnixDgram,
  ) {}

  /**
   * The notifier for this process, or `undefined` when systemd did not ask for notifications.
   * `load` is for tests; by default the native unix-dgram is loaded on first use.
   */
  static fromEnv(env: NotifyEnvironment, log: Pick<Logger, 'warn'>, load: () => UnixDgram = loadUnixDgram): SystemdNotifier | undefined {
    const path = env.NOTIFY_SOCKET;
    if (!path) return undefined;
    if (path.startsWith('@')) {
      // unix-dgram copies the path with strncpy: the leading NUL of an abstract address is lost.
      log.warn('NOTIFY_SOCKET is an abstract socket, which postaged cannot send to: no readiness or watchdog notifications', { socket: path });
      return undefined;
    }
    // sd_watchdog_enabled(3): WATCHDOG_PID, when set, names the process that must ping.
    const pid = env.WATCHDOG_PID;
    const usec = pid === undefined || Number(pid) === process.pid ? Number(env.WATCHDOG_USEC ?? 0) : 0;
    return new SystemdNotifier(path, Number.isFinite(usec) && usec > 0 ? usec : 0, log, load);
  }

  /** Tells systemd what a phase of the daemon means to it (`starting` is systemd's own state). */
  phase(phase: Phase, detail: string): void {
    if (phase === 'running') this.ready(detail);
    else if (phase === 'restarting') this.reloading(`restarting in place: ${detail}`);
    else if (phase === 'stopping') this.stopping(`stopping: ${detail}`);
  }

  /** Every application consumes: the service is up (and a reload is over). */
  ready(status: string): void {
    this.send(`READY=1\nSTATUS=${oneLine(status)}`);
  }

  /**
   * An in-place restart begins: systemd shows the unit as `reloading` until the next READY=1.
   * MONOTONIC_USEC is CLOCK_MONOTONIC (what `process.hrtime` reads), as systemd >= 253 wants it.
   */
  reloading(status: string): void {
    this.send(`RELOADING=1\nMONOTONIC_USEC=${process.hrtime.bigint() / 1000n}\nSTATUS=${oneLine(status)}`);
  }

  stopping(status: string): void {
    this.send(`STOPPING=1\nSTATUS=${oneLine(status)}`);
  }

  status(status: string): void {
    this.send(`STATUS=${oneLine(status)}`);
  }

  /**
   * Pings WATCHDOG=1 every half of WatchdogSec, from a timer of the event loop: a loop blocked
   * (or starved) for longer than WatchdogSec stops the pings, and systemd kills and restarts
   * the service. The timer is unref'd: it never keeps the process alive. Idempotent.
   */
  startWatchdog(): void {
    if (this.watchdogUsec === 0 || this.watchdog) return;
    const every = Math.max(1, Math.floor(this.watchdogUsec / 2000));
    this.send('WATCHDOG=1');
    this.watchdog = setInterval(() => this.send('WATCHDOG=1'), every).unref();
  }

  /**
   * One WATCHDOG=1 now (when a watchdog is asked for): sent just before the exec of an in-place
   * restart, so that the gap systemd sees across it is the new image's start alone, not that
   * plus up to half a period since the last timer ping.
   */
  ping(): void {
    if (this.watchdogUsec !== 0) this.send('WATCHDOG=1');
  }

  /** Stops the pings. */
  close(): void {
    clearInterval(this.watchdog);
    this.watchdog = undefined;
  }

  /**
   * One socket per message: unix-dgram's socket holds a poll handle that would keep the event
   * loop alive, and its sendto(2) is synchronous, so the datagram is gone when `send` returns.
   */
  private send(message: string): void {
    if (this.failed) return;
    let socket: DgramSocket | undefined;
    try {
      socket = this.load().createSocket('unix_dgram');
      socket.on('error', (err) => this.warn(err));
      const buf = Buffer.from(message);
      socket.send(buf, 0, buf.length, this.path, (err) => {
        if (err) this.warn(err);
      });
    } catch (err) {
      this.warn(err as Error);
    } finally {
      socket?.close();
    }
  }

  /** Once: after a failure the notifier is off (a watchdog, if asked for, will then fire). */
  private warn(err: Error): void {
    if (this.failed) return;
    this.failed = true;
    this.log.warn('cannot notify systemd: readiness and watchdog notifications are off', { socket: this.path, reason: err.message });
  }
}

function loadUnixDgram(): UnixDgram {
  return createRequire(import.meta.url)('unix-dgram') as UnixDgram;
}

/** A STATUS= value is one line. */
function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ');
}
