/**
 * Dispatch: from the bytes of a delivery to what its handlers made of it. Decodes (size and
 * depth checked before parsing), validates, routes by (category, type, name) and invokes the
 * handlers, returning an {@link Outcome}. It acknowledges nothing and publishes nothing
 * itself: what happens to the delivery is settlement's business (settlement.ts), and the
 * reply of an RPC goes through the `reply` function it is given.
 * @internal
 */
import { FilterError, PostageError, RejectMessage } from '../errors.js';
import type { Encoder } from '../wire/encoder.js';
import { errorToResult, MessageResult, MessageResultError, validateBody, type MessageBody } from '../wire/message.js';
import type { Logger } from '../logger.js';
import { RouteIndex, type HandlerEntry, type HandlerTable } from './handler-table.js';
import { isHandlerClass, type ReplyFunc } from './handler.js';

/**
 * Why a body was refused before any handler ran: `content-type` is a message whose
 * `content_type` property names another format than the encoder's (absent is accepted).
 */
export type InvalidReason = 'content-type' | 'decode' | 'too-large' | 'too-deep' | 'malformed';

/** What decoding a delivery gave. @internal */
export type Decoded = { ok: true; body: MessageBody } | { ok: false; reason: InvalidReason; error: Error };

/** What dispatching a valid body gave. @internal */
export type Outcome =
  /** Every handler ran (message), or the RPC handler answered (with its value or its exception). */
  | { kind: 'handled'; rpcFailed?: unknown }
  /** No handler for it: a message is acked as it is; an RPC was answered with an error. */
  | { kind: 'unhandled' }
  /** A filter or handler threw `RejectMessage`. */
  | { kind: 'rejected'; error: RejectMessage }
  /** A message handler threw (after every other handler for the message ran). */
  | { kind: 'failed'; error: unknown };

/** The outcomes that carry nothing but their kind, shared rather than built per message. */
const HANDLED: Outcome = Object.freeze({ kind: 'handled' });
const UNHANDLED: Outcome = Object.freeze({ kind: 'unhandled' });

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null | undefined)?.then === 'function';
}

const REASONS: Partial<Record<string, InvalidReason>> = {
  POSTAGE_ERR_DECODE: 'decode',
  POSTAGE_ERR_BODY_TOO_LARGE: 'too-large',
  POSTAGE_ERR_TOO_DEEP: 'too-deep',
};

/** The longest stretch a handler held the event loop (its synchronous part), lately. */
export interface LoopHold {
  ms: number;
  handler: string;
  /** When it ended (`performance.now()`). */
  endedAt: number;
}

/** @internal */
export class Dispatcher {
  /** The last handler call that held the event loop for long (≥ 50 ms): who blocked it, for the daemon's watchdog. */
  lastHold: LoopHold | undefined;
  readonly #routes: RouteIndex;

  constructor(
    /** The object whose methods are the handlers (the processor). */
    private readonly target: object,
    table: HandlerTable,
    private readonly encoder: Encoder,
    private readonly logger: Logger,
    /** Who is answering, for the unknown-RPC error. */
    private readonly name: string,
  ) {
    this.#routes = new RouteIndex(table);
  }

  /** Decodes and validates a body; never throws. */
  decode(content: Buffer): Decoded {
    let value: unknown;
    try {
      value = this.encoder.decode(content);
    } catch (err) {
      const reason = err instanceof PostageError ? (REASONS[err.code] ?? 'decode') : 'decode';
      return { ok: false, reason, error: err as Error };
    }
    try {
      return { ok: true, body: validateBody(value) };
    } catch (err) {
      return { ok: false, reason: 'malformed', error: err as Error };
    }
  }

  /** Handlers for a body's (category, type, name), exact routes first, then wildcard ones. */
  handlersFor(category: string, body: MessageBody): readonly HandlerEntry[] {
    return this.#routes.lookup(category, body.type, body.name);
  }

  /** Runs the handlers of a body. Never throws: every failure is an outcome. */
  async dispatch(body: MessageBody, reply: ReplyFunc): Promise<Outcome> {
    try {
      return body.category === 'rpc' ? await this.#rpc(body, reply) : await this.#message(body);
    } catch (err) {
      if (err instanceof RejectMessage) return { kind: 'rejected', error: err };
      return { kind: 'failed', error: err };
    }
  }

  /**
   * `message` category: every handler for (type, name) runs, in registration order, each on
   * its own deep copy; a `FilterError` skips one handler; one that throws does not stop the
   * others; `RejectMessage` rejects the message at once.
   */
  async #message(body: MessageBody): Promise<Outcome> {
    const handlers = this.handlersFor('message', body);
    if (handlers.length === 0) return UNHANDLED;
    let firstError: unknown;
    for (let i = 0; i < handlers.length; i++) {
      const entry = handlers[i]!;
      try {
        // Each handler gets its own copy; the last one may have the freshly decoded original.
        const source = entry.receives === 'body' ? body : body.content;
        const running = this.#run(entry, i === handlers.length - 1 ? source : structuredClone(source), undefined);
        if (isThenable(running)) await running;
      } catch (err) {
        if (err instanceof FilterError) continue;
        if (err instanceof RejectMessage) throw err;
        this.logger.error('handler failed', { handler: entry.label, name: body.name, error: (err as Error)?.message, stack: (err as Error)?.stack });
        firstError ??= err;
      }
    }
    return firstError === undefined ? HANDLED : { kind: 'failed', error: firstError };
  }

  /**
   * `rpc` category: only the last registered handler runs; its exception is the answer; a
   * handler that neither replied nor returned a value answers `null` (a caller waiting for a
   * reply that never comes would send the request again and again).
   */
  async #rpc(body: MessageBody, reply: ReplyFunc): Promise<Outcome> {
    const entry = this.handlersFor('rpc', body).at(-1);
    let replied = false;
    const once: ReplyFunc = async (result) => {
      if (replied) {
        this.logger.warn('RPC handler replied more than once: only the first reply is sent', { name: body.name });
        return;
      }
      replied = true;
      await reply(result);
    };
    if (!entry) {
      await once(new MessageResultError(`unknown RPC command '${body.name}' (type '${body.type}') for ${this.name}`, 'POSTAGE_ERR_UNKNOWN_COMMAND'));
      return UNHANDLED;
    }
    try {
      const running = this.#run(entry, entry.receives === 'body' ? body : body.content, once);
      const value = isThenable(running) ? await running : running;
      if (!replied) await once(value === undefined ? new MessageResult(null) : value);
      return HANDLED;
    } catch (err) {
      if (err instanceof RejectMessage) throw err;
      if (err instanceof FilterError) {
        if (!replied) await once(new MessageResultError(`the request was filtered out: ${err.message}`));
        return HANDLED;
      }
      // The caller gets the exception as its answer; the request itself is done.
      this.logger.error('RPC handler failed', { handler: entry.label, error: (err as Error)?.message });
      if (!replied) await once(errorToResult(err));
      return { kind: 'handled', rpcFailed: err };
    }
  }

  /**
   * Filters, then the handler. Synchronous when there are no filters: a promise only when a
   * filter or the handler is async (awaiting a plain value costs every message a promise).
   */
  #run(entry: HandlerEntry, data: unknown, reply: ReplyFunc | undefined): unknown {
    if (entry.filters.length === 0) return this.#invoke(entry, data, reply);
    return this.#applyFilters(entry, data).then((value) => this.#invoke(entry, value, reply));
  }

  async #applyFilters(entry: HandlerEntry, data: unknown): Promise<unknown> {
    let value = data;
    for (const f of entry.filters) value = await f.fn(value, ...f.args);
    return value;
  }

  /** Calls the handler; its result as it returned it (a promise from an async one). */
  #invoke(entry: HandlerEntry, data: unknown, reply: ReplyFunc | undefined): unknown {
    // The synchronous part of the call is timed: a handler that holds the event loop (a busy
    // loop, a huge JSON) stalls every application of the process, and the watchdog names it.
    const t0 = performance.now();
    try {
      return this.#call(entry, data, reply);
    } finally {
      const t1 = performance.now();
      if (t1 - t0 >= 50) this.lastHold = { ms: t1 - t0, handler: entry.label, endedAt: t1 };
    }
  }

  #call(entry: HandlerEntry, data: unknown, reply: ReplyFunc | undefined): unknown {
    if (typeof entry.target === 'string') {
      const fn = (this.target as Record<string, unknown>)[entry.target];
      if (typeof fn !== 'function') throw new TypeError(`${entry.label} is not a method`);
      return reply ? fn.call(this.target, data, reply) : fn.call(this.target, data);
    }
    if (isHandlerClass(entry.target)) {
      const instance = new entry.target(this.target, data, reply);
      return instance.call();
    }
    throw new TypeError(`${entry.label} is neither a method nor a Handler class`);
  }
}
