/**
 * The daemon's logs: one JSON object per line when stdout is not a terminal (journald,
 * docker, files, tests), readable coloured lines when it is. Every line carries `pid` and
 * `host`; lines about an application carry `app` (child logger per application). Known
 * secrets are scrubbed from the final line, whatever field they hid in.
 *
 * The lines are winston's (which the daemon used before): the same fields, keys sorted,
 * circular references and BigInts written safely (safe-stable-stringify, as winston's JSON
 * format does). winston itself took 50-100 ms to import, ~9 MiB, at every restart.
 */
import os from 'node:os';
import { configure } from 'safe-stable-stringify';
import type { Logger } from 'postage';
import { scrubber } from './secrets.js';

export interface LoggerOptions {
  level: string;
  format: 'auto' | 'json' | 'pretty';
  /** Strings that must never appear in a log line. */
  secrets?: readonly string[];
  /** Default: `process.stdout.isTTY`. */
  isTTY?: boolean;
  host?: string;
  /** Where lines go. Default: stdout. */
  stream?: NodeJS.WritableStream;
}

/** A logger that makes children whose lines carry more fields (e.g. `{ app }`). */
export interface DaemonLogger extends Logger {
  child(meta: Record<string, unknown>): DaemonLogger;
  isDebugEnabled(): boolean;
}

type Level = 'error' | 'warn' | 'info' | 'debug';
const SEVERITY: Record<Level, number> = { error: 0, warn: 1, info: 2, debug: 3 };
const COLOUR: Record<Level, number> = { error: 31, warn: 33, info: 32, debug: 34 };

/** BigInts as strings (winston's JSON format does the same). */
const replacer = (_key: string, value: unknown): unknown => (typeof value === 'bigint' ? value.toString() : value);
const sortedJson = configure({});
const plainJson = configure({ deterministic: false });

interface Sink {
  severity: number;
  defaults: Record<string, unknown>;
  line(info: Record<string, unknown>): string;
  write(line: string): void;
}

class LineLogger implements DaemonLogger {
  constructor(
    private readonly sink: Sink,
    private readonly meta: Record<string, unknown>,
  ) {}

  error(message: string, meta?: Record<string, unknown>): void {
    this.log('error', message, meta);
  }

  warn(message: string, meta?: Record<string, unknown>): void {
    this.log('warn', message, meta);
  }

  info(message: string, meta?: Record<string, unknown>): void {
    this.log('info', message, meta);
  }

  debug(message: string, meta?: Record<string, unknown>): void {
    this.log('debug', message, meta);
  }

  isDebugEnabled(): boolean {
    return this.sink.severity >= SEVERITY.debug;
  }

  child(meta: Record<string, unknown>): DaemonLogger {
    return new LineLogger(this.sink, { ...this.meta, ...meta });
  }

  /** The fields of a line, with winston's precedence: the call's meta, then pid/host, then the child's. */
  private log(level: Level, message: string, meta?: Record<string, unknown>): void {
    if (SEVERITY[level] > this.sink.severity) return;
    const info: Record<string, unknown> = { ...this.meta, ...this.sink.defaults, ...meta, level, message };
    if (meta && typeof meta === 'object') {
      if (meta['message']) info['message'] = `${message} ${String(meta['message'])}`;
      if (meta['stack']) info['stack'] = meta['stack'];
      if (meta['cause']) info['cause'] = meta['cause'];
    }
    this.sink.write(`${this.sink.line(info)}\n`);
  }
}

const pad = (n: number, width = 2): string => String(n).padStart(width, '0');

/** `HH:mm:ss.SSS`, local time. */
function clock(d: Date): string {
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** Creates the root logger. Use `logger.child({ app })` for lines about one application. */
export function createLogger(options: LoggerOptions): DaemonLogger {
  const tty = options.isTTY ?? Boolean(process.stdout.isTTY);
  const mode = options.format === 'auto' ? (tty ? 'pretty' : 'json') : options.format;
  const secrets = [...(options.secrets ?? [])];
  const clean = secrets.length > 0 ? scrubber(secrets) : (line: string) => line;
  const json = (info: Record<string, unknown>): string => sortedJson({ ...info, timestamp: new Date().toISOString() }, replacer) ?? '{}';
  const pretty = (info: Record<string, unknown>): string => {
    const { level, message, app, pid: _pid, host: _host, ...rest } = info;
    const shown = tty ? `\x1b[${COLOUR[level as Level]}m${String(level)}\x1b[39m` : String(level);
    const meta = Object.keys(rest).length > 0 ? ` ${plainJson(rest, replacer)}` : '';
    return `${clock(new Date())} ${shown} ${app ? `[${String(app)}] ` : ''}${String(message)}${meta}`;
  };
  const format = mode === 'json' ? json : pretty;
  const stream = options.stream ?? process.stdout;
  // A log reader that went away (a closed pipe: EPIPE) must not take the daemon with it:
  // unhandled, the stream's error is an uncaught exception, whose report is a log line,
  // which fails again, and so on for good. The lines are dropped from then on.
  let broken = false;
  stream.on('error', () => {
    broken = true;
  });
  const sink: Sink = {
    severity: SEVERITY[options.level as Level] ?? SEVERITY.info,
    defaults: { pid: process.pid, host: options.host ?? os.hostname() },
    line: (info) => clean(format(info)),
    write: (line) => {
      if (!broken) stream.write(line);
    },
  };
  return new LineLogger(sink, {});
}

/**
 * Lets the last lines reach stdout before the process exits or execs (a write to a pipe or a
 * file is synchronous on Linux; a stream given in `stream` may need a turn or two).
 */
export async function flushLogs(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
