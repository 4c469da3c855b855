/**
 * The daemon's logs (winston): one JSON object per line when stdout is not a terminal
 * (journald, docker, files, tests), readable coloured lines when it is. Every line carries
 * `pid` and `host`; lines about an application carry `app` (child logger per application).
 * Known secrets are scrubbed from the final line, whatever field they hid in.
 */
import os from 'node:os';
import winston from 'winston';
import { scrubber } from './secrets.js';

// triple-beam's MESSAGE symbol: the formatted line a transport writes.
const MESSAGE = Symbol.for('message');

export interface LoggerOptions {
  level: string;
  format: 'auto' | 'json' | 'pretty';
  /** Strings that must never appear in a log line. */
  secrets?: readonly string[];
  /** Default: `process.stdout.isTTY`. */
  isTTY?: boolean;
  host?: string;
  /** Where lines go. Default: stdout (winston's Console transport). */
  stream?: NodeJS.WritableStream;
}

const scrub = (secrets: readonly string[]) => {
  const clean = scrubber(secrets);
  return winston.format((info) => {
    const line = (info as unknown as Record<symbol, unknown>)[MESSAGE];
    if (typeof line === 'string' && secrets.length > 0) (info as unknown as Record<symbol, unknown>)[MESSAGE] = clean(line);
    return info;
  })();
};

const pretty = winston.format.printf((info) => {
  const { timestamp, level, message, app, pid: _pid, host: _host, ...rest } = info as Record<string, unknown>;
  const meta = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : '';
  return `${String(timestamp)} ${level} ${app ? `[${String(app)}] ` : ''}${String(message)}${meta}`;
});

/** Creates the root logger. Use `logger.child({ app })` for lines about one application. */
export function createLogger(options: LoggerOptions): winston.Logger {
  const tty = options.isTTY ?? Boolean(process.stdout.isTTY);
  const mode = options.format === 'auto' ? (tty ? 'pretty' : 'json') : options.format;
  const secrets = [...(options.secrets ?? [])];
  const format =
    mode === 'json'
      ? winston.format.combine(winston.format.timestamp(), winston.format.json(), scrub(secrets))
      : winston.format.combine(
          winston.format.timestamp({ format: 'HH:mm:ss.SSS' }),
          ...(tty ? [winston.format.colorize({ level: true })] : []),
          pretty,
          scrub(secrets),
        );
  return winston.createLogger({
    level: options.level,
    defaultMeta: { pid: process.pid, host: options.host ?? os.hostname() },
    format,
    transports: [options.stream ? new winston.transports.Stream({ stream: options.stream }) : new winston.transports.Console()],
  });
}

/**
 * Lets winston's stream pipeline hand the last lines to stdout (it does so a tick later)
 * before the process exits or execs.
 */
export async function flushLogs(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
