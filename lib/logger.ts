/**
 * The logger interface the library writes to. winston's loggers fit it as they are;
 * the library itself never calls `console`.
 */
export interface Logger {
  error(message: string, meta?: Record<string, unknown>): unknown;
  warn(message: string, meta?: Record<string, unknown>): unknown;
  info(message: string, meta?: Record<string, unknown>): unknown;
  debug(message: string, meta?: Record<string, unknown>): unknown;
  child?(meta: Record<string, unknown>): Logger;
  /** winston's: lets hot paths skip building debug metadata. */
  isDebugEnabled?(): boolean;
}

const noop = (): void => undefined;

/** Discards everything: the default when no logger is given. */
export const silentLogger: Logger = { error: noop, warn: noop, info: noop, debug: noop, isDebugEnabled: () => false };

/** Whether `logger.debug` may print anything. @internal */
export function debugEnabled(logger: Logger): boolean {
  return typeof logger.isDebugEnabled === 'function' ? logger.isDebugEnabled() : true;
}

/** A child logger when the logger supports it, else the logger itself. @internal */
export function childLogger(logger: Logger, meta: Record<string, unknown>): Logger {
  return typeof logger.child === 'function' ? logger.child(meta) : logger;
}

/**
 * The logger used when none is given: silent, except that `POSTAGE_DEBUG_MODE=true`
 * traces to stderr as Python Postage printed its wire trace.
 * @internal
 */
export function defaultLogger(debug: boolean): Logger {
  if (!debug) return silentLogger;
  const write = (level: string) => (message: string, meta?: Record<string, unknown>) =>
    process.stderr.write(`postage ${level}: ${message}${meta ? ` ${JSON.stringify(meta)}` : ''}\n`);
  return { error: write('error'), warn: write('warn'), info: write('info'), debug: write('debug'), isDebugEnabled: () => true };
}
