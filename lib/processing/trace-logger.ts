/**
 * A logger that adds the current trace context (`trace_id`, `span_id`) to every line logged
 * while a handler runs, so that the lines of one request can be found across applications
 * and processes. Outside any trace it logs exactly what it is given.
 *
 * The ids are read when a line is logged, not when a message arrives: a message costs
 * nothing more here unless its handler logs.
 * @internal
 */
import type { Logger } from '../logger.js';
import { currentTrace } from '../wire/trace-context.js';

const WRAPPED = Symbol('postage.traceLogger');

type Level = 'error' | 'warn' | 'info' | 'debug';

/** Logs at `level`, with the trace ids when there is a trace; never passes an `undefined` meta (winston would keep it as a splat). */
function write(inner: Logger, level: Level, message: string, meta: Record<string, unknown> | undefined): unknown {
  const trace = currentTrace();
  if (trace) return inner[level](message, { ...meta, trace_id: trace.traceId, span_id: trace.spanId });
  return meta === undefined ? inner[level](message) : inner[level](message, meta);
}

/**
 * Wraps `inner`. The wrapper inherits from it, so what a plugin calls beyond the `Logger`
 * interface (winston's `log()`, say) still works, without the ids.
 * @internal
 */
export function traceLogger(inner: Logger): Logger {
  if ((inner as { [WRAPPED]?: true })[WRAPPED]) return inner;
  const wrapper = Object.create(inner as object) as Logger & { [WRAPPED]: true };
  Object.defineProperties(wrapper, {
    [WRAPPED]: { value: true },
    error: { value: (message: string, meta?: Record<string, unknown>) => write(inner, 'error', message, meta) },
    warn: { value: (message: string, meta?: Record<string, unknown>) => write(inner, 'warn', message, meta) },
    info: { value: (message: string, meta?: Record<string, unknown>) => write(inner, 'info', message, meta) },
    debug: { value: (message: string, meta?: Record<string, unknown>) => write(inner, 'debug', message, meta) },
  });
  if (typeof inner.child === 'function') {
    const child = inner.child.bind(inner);
    Object.defineProperty(wrapper, 'child', { value: (meta: Record<string, unknown>) => traceLogger(child(meta)) });
  }
  return wrapper;
}
