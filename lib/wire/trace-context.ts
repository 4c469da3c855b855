/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/) as Postage carries it: a
 * `traceparent` header (and `tracestate`, passed along untouched) on every message a
 * producer sends and on every RPC reply, and the context of the handler running now.
 *
 * - A producer's send continues the current context (inside a handler: that handler's
 *   trace, with the handler's span as the parent), else starts a new trace.
 * - The processor makes a child span of the message's context current while the handlers
 *   of that message run (a message without one, from a Python peer say, starts a trace), so
 *   the handler's logs, its sends and its RPC reply carry the trace id.
 *
 * The current context lives in an AsyncLocalStorage, so it follows the handler through its
 * awaits and timers without being passed around. Nothing here exports spans: the ids are
 * for logs and for whatever tracer the user installs (an OpenTelemetry SDK reads and writes
 * the same `traceparent` header). Python Postage ignores AMQP headers, so it is harmless there.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomFillSync } from 'node:crypto';

/** AMQP header carrying the W3C `traceparent`. */
export const TRACEPARENT_HEADER = 'traceparent';
/** AMQP header carrying the W3C `tracestate` (vendor data, passed along as it came). */
export const TRACESTATE_HEADER = 'tracestate';

/** One span of a trace, as W3C Trace Context identifies it. */
export interface TraceContext {
  /** 32 lower-case hex digits, not all zero. */
  readonly traceId: string;
  /** 16 lower-case hex digits, not all zero: this span. */
  readonly spanId: string;
  /** The span this one continues (the sender's), when known. */
  readonly parentSpanId?: string;
  /** Trace flags, two hex digits (`01`: sampled). */
  readonly flags: string;
  /** The `tracestate` header that came with it, passed along unchanged. */
  readonly traceState?: string;
}

/** What is current while a handler runs: its span, and the application whose handler it is. */
interface Scope {
  trace: TraceContext;
  /** The application (processor fingerprint name) whose handler runs, for metrics. */
  owner: string | undefined;
}

const storage = new AsyncLocalStorage<Scope>();

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/**
 * Random ids come from a pool filled 4 KiB at a time: one `randomBytes()` call per message
 * cost more than the rest of the context put together.
 */
const pool = Buffer.alloc(4096);
let poolAt = pool.length;

function randomHex(bytes: number): string {
  if (poolAt + bytes > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  const hex = pool.toString('hex', poolAt, poolAt + bytes);
  poolAt += bytes;
  // All zeros is invalid; 2^-64 at worst, but cheap to rule out.
  return /^0+$/.test(hex) ? randomHex(bytes) : hex;
}

/** A new span id (16 hex digits). */
export function newSpanId(): string {
  return randomHex(8);
}

/** A new trace, sampled, with a root span. */
export function newTrace(): TraceContext {
  return { traceId: randomHex(16), spanId: randomHex(8), flags: '01' };
}

/**
 * Reads a `traceparent` (and its `tracestate`) from AMQP headers' values; undefined when
 * absent or invalid (an invalid one is ignored, as the W3C recommendation says).
 */
export function parseTraceparent(value: unknown, traceState?: unknown): TraceContext | undefined {
  if (typeof value !== 'string' && !Buffer.isBuffer(value)) return undefined;
  const m = TRACEPARENT.exec(String(value).trim().toLowerCase());
  if (!m) return undefined;
  const [, version, traceId, spanId, flags, rest] = m as unknown as [string, string, string, string, string, string | undefined];
  // Version ff is forbidden; version 00 has nothing after the flags; later versions may.
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined;
  const state = typeof traceState === 'string' || Buffer.isBuffer(traceState) ? String(traceState) : undefined;
  return { traceId, spanId, flags, ...(state ? { traceState: state } : {}) };
}

/** The `traceparent` value of a context (version 00). */
export function formatTraceparent(trace: TraceContext): string {
  return `00-${trace.traceId}-${trace.spanId}-${trace.flags}`;
}

/** A new span of the same trace, continuing `parent`; a new trace when there is no parent. */
export function childSpan(parent: TraceContext | undefined): TraceContext {
  if (!parent) return newTrace();
  return { traceId: parent.traceId, spanId: newSpanId(), parentSpanId: parent.spanId, flags: parent.flags, ...(parent.traceState ? { traceState: parent.traceState } : {}) };
}

/** The trace context of the handler (or of the `runWithTrace` callback) running now. */
export function currentTrace(): TraceContext | undefined {
  return storage.getStore()?.trace;
}

/** The application whose handler runs now, if any. @internal */
export function currentOwner(): string | undefined {
  return storage.getStore()?.owner;
}

/**
 * Runs `fn` with `trace` as the current context (a `traceparent` string is parsed; an
 * absent or invalid one starts a new trace): what `fn` sends, directly or after awaits,
 * belongs to that trace. E.g. to send several messages as one trace from outside any
 * handler: `runWithTrace(newTrace(), () => …)`.
 */
export function runWithTrace<T>(trace: TraceContext | string | undefined, fn: () => T): T {
  const context = typeof trace === 'string' ? (parseTraceparent(trace) ?? newTrace()) : (trace ?? newTrace());
  return storage.run({ trace: context, owner: storage.getStore()?.owner }, fn);
}

/** Runs a handler of application `owner` in `trace`. @internal */
export function runHandlerScope<T>(trace: TraceContext, owner: string, fn: () => T): T {
  return storage.run({ trace, owner }, fn);
}

/**
 * The headers a send carries: the current context, if there is one (in a handler of a traced
 * message, or in `runWithTrace`). The parent id sent is the current span (the handler's), so
 * the receiver's span is its child. Outside any context a send carries none: a trace starts
 * where the user (or an OpenTelemetry SDK) starts it, and untraced traffic costs nothing.
 */
export function outgoingTraceHeaders(): Record<string, string> | undefined {
  const trace = storage.getStore()?.trace;
  if (!trace) return undefined;
  const headers: Record<string, string> = { [TRACEPARENT_HEADER]: formatTraceparent(trace) };
  if (trace.traceState) headers[TRACESTATE_HEADER] = trace.traceState;
  return headers;
}
