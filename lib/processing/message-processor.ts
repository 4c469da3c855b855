import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { brand, FilterError, PostageError, RejectMessage } from '../errors.js';
import { Connection } from '../amqp/connection.js';
import type { ExchangeClass } from '../amqp/exchange.js';
import { GenericConsumer, type Delivery, type ExchangeQueueKeys } from '../messaging/generic-consumer.js';
import { Publisher } from '../messaging/publisher.js';
import { MicroThread } from '../scheduler/micro-thread.js';
import { JsonEncoder, type Encoder } from '../wire/encoder.js';
import { Fingerprint, type FingerprintDict } from '../wire/fingerprint.js';
import { errorToResult, Message, MessageResult, MessageResultError, validateBody, type MessageBody } from '../wire/message.js';
import { childLogger, debugEnabled, type Logger } from '../logger.js';
import { MessageHandler } from './handlers.js';
import { buildHandlerTable, routeKey, type HandlerEntry, type HandlerTable } from './handler-table.js';
import { isHandlerClass, type ReplyFunc } from './handler.js';
import { getRestartHook } from './restart-hook.js';
import { RateLimitedLog } from './rate-limited-log.js';

/** Where failed messages go instead of vanishing. */
export interface DeadLetterTarget {
  exchange: ExchangeClass;
  routingKey: string;
}

/** Options of `new MessageProcessor()`. */
export interface ProcessorOptions {
  /** Who this processor is. Default: an automatic fingerprint named after the class. */
  fingerprint?: Fingerprint | Partial<FingerprintDict>;
  /** Bindings; replaces the class-level `static eqk` when given. */
  eqk?: ExchangeQueueKeys;
  /** Default: `Connection.shared()`. */
  connection?: Connection;
  /** Broker prefetch for this processor's channel. Default: 50. */
  prefetch?: number;
  /** Messages handled at the same time. Default: 1 (in order, as Python did). */
  concurrency?: number;
  /** How long `close()` waits for in-flight handlers, in ms. Default: 10000. */
  drainTimeout?: number;
  /** Failed and undecodable messages are published here with reason headers; otherwise rejected. */
  deadLetter?: DeadLetterTarget;
  encoder?: Encoder;
  logger?: Logger;
}

/** Counters kept per processor (shown by the daemon's `status`). */
export interface ProcessorStats {
  received: number;
  handled: number;
  failed: number;
  rejected: number;
  deadLettered: number;
  unhandled: number;
  /** Messages refused before any handler, per reason (`decode`, `too-large`, `too-deep`, `malformed`). */
  invalid: Record<string, number>;
}

/** Why a processor stopped or asked for a restart. */
export interface LifecycleEvent {
  processor: MessageProcessor;
  reason: string;
  /** Identity of the command that caused it: its AMQP message id, else `sha1:` and a hash of the body. */
  messageId?: string;
}

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (err: unknown) => void } {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined); // observed through ready(); never an unhandled rejection
  return { promise, resolve, reject };
}

/** Errors already logged by the handler loop, so the dead-letter path does not log them twice. */
const loggedErrors = new WeakSet<object>();

const REASONS: Record<string, string> = {
  POSTAGE_ERR_DECODE: 'decode',
  POSTAGE_ERR_BODY_TOO_LARGE: 'too-large',
  POSTAGE_ERR_TOO_DEEP: 'too-deep',
};

/**
 * A microthread that owns a consumer and dispatches each message to its handlers
 * (Python's `MessageProcessor`, SPEC §2):
 * - `message` category: every handler for (type, name) runs, in registration order, each on
 *   its own deep copy; a `FilterError` skips one handler; `RejectMessage` rejects the message;
 * - `rpc` category: only the last registered RPC handler runs; a throw is answered with
 *   `MessageResultException(error.name, error.message)`; an unknown command with an error result;
 * - a message is acked only after all its handlers have finished (async ones included).
 * Events: `stopped` and `restart` ({@link LifecycleEvent}).
 */
export class MessageProcessor extends MicroThread {
  static eqk: ExchangeQueueKeys = [];
  static consumerClass: typeof GenericConsumer = GenericConsumer;

  readonly fingerprint: FingerprintDict;
  readonly consumer: GenericConsumer;
  readonly connection: Connection;
  readonly encoder: Encoder;
  readonly logger: Logger;
  readonly events = new EventEmitter();
  readonly stats: ProcessorStats = { received: 0, handled: 0, failed: 0, rejected: 0, deadLettered: 0, unhandled: 0, invalid: {} };
  /** `created` → `starting` → `running` (consuming) → `stopping` → `stopped`. */
  state: 'created' | 'starting' | 'running' | 'stopping' | 'stopped' = 'created';
  protected readonly concurrency: number;
  protected readonly drainTimeout: number;
  protected readonly deadLetter: DeadLetterTarget | undefined;
  readonly #handlerTable: HandlerTable;
  readonly #inbox: Delivery[] = [];
  readonly #inFlight = new Set<Promise<void>>();
  #wake: (() => void) | undefined;
  #pendingAction: { kind: 'quit' | 'restart'; messageId: string } | undefined;
  #closing: Promise<void> | undefined;
  readonly #invalidLog: RateLimitedLog;
  readonly #started = deferred();
  /** Whether per-message debug tracing is on (building its metadata costs on a hot path). */
  readonly #trace: boolean;

  constructor(options: ProcessorOptions = {}) {
    super();
    const fp = options.fingerprint instanceof Fingerprint ? options.fingerprint.asDict() : options.fingerprint;
    this.connection = options.connection ?? Connection.shared();
    this.fingerprint = { ...new Fingerprint({ name: this.constructor.name, type: 'processor', vhost: this.connection.vhost }).asDict(), ...(fp ?? {}) };
    this.encoder = options.encoder ?? new JsonEncoder();
    this.logger = childLogger(options.logger ?? this.connection.logger, { app: this.fingerprint.name });
    this.concurrency = Math.max(1, options.concurrency ?? 1);
    this.drainTimeout = options.drainTimeout ?? 10_000;
    this.deadLetter = options.deadLetter;
    const statics = this.constructor as typeof MessageProcessor;
    const consumerOptions = { connection: this.connection, encoder: this.encoder, logger: this.logger, eqk: options.eqk ?? statics.eqk };
    this.consumer = new statics.consumerClass(options.prefetch === undefined ? consumerOptions : { ...consumerOptions, prefetch: options.prefetch });
    this.#handlerTable = buildHandlerTable(this.constructor, MessageProcessor);
    this.#invalidLog = new RateLimitedLog(this.logger, 1000);
    this.#trace = debugEnabled(this.logger);
  }

  /** Adds bindings at run time (Python's `add_eqk`). */
  async addEqk(eqk: ExchangeQueueKeys): Promise<void> {
    for (const [exchange, qks] of eqk) for (const [queue, key] of qks) await this.consumer.queueBind(exchange, queue, key);
  }

  /** Starts consuming. Called once by the scheduler. */
  override async create(): Promise<void> {
    this.state = 'starting';
    try {
      await this.consumer.start((delivery) => {
        this.#inbox.push(delivery);
        this.#wakeUp();
      });
    } catch (err) {
      this.#started.reject(err);
      throw err;
    }
    if (this.state === 'starting') this.state = 'running';
    this.#started.resolve();
  }

  /** Resolves once the processor consumes all its queues; rejects if starting failed. */
  ready(): Promise<void> {
    return this.#started.promise;
  }

  /** True once every queue has a consumer. */
  get consuming(): boolean {
    return this.state === 'running';
  }

  #wakeUp(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  /** Dispatches the next message (or waits for one). */
  override async step(): Promise<void> {
    if (this.#pendingAction && this.#inFlight.size === 0) {
      await this.#performPendingAction();
      return;
    }
    // Nothing new is dispatched once stopping or while a quit/restart waits for the handlers.
    let delivery = this.#pendingAction || this.state === 'stopping' || this.state === 'stopped' ? undefined : this.#inbox.shift();
    // A delivery from a channel that is gone will be delivered again by the broker: handling
    // it now would handle it twice (its ack could not be sent anyway).
    while (delivery?.stale) delivery = this.#inbox.shift();
    if (!delivery) {
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        if ((this.#inbox.length > 0 && this.state === 'running') || !this.running || (this.#pendingAction && this.#inFlight.size === 0)) this.#wakeUp();
      });
      return;
    }
    const work = this.#dispatch(delivery)
      .catch((err: unknown) => {
        // #dispatch handles every failure itself; this is the last line so that nothing a
        // handler does can reach the scheduler or amqplib's event path.
        this.logger.error('message dispatch failed unexpectedly', { error: (err as Error)?.message });
        delivery.reject(false);
      })
      .finally(() => {
      this.#inFlight.delete(work);
      this.#wakeUp();
    });
    this.#inFlight.add(work);
    if (this.#inFlight.size >= this.concurrency) await Promise.race(this.#inFlight);
  }

  override stop(): void {
    super.stop();
    this.#wakeUp();
  }

  /** Stops this processor after the current message (what the `quit` command does). */
  requestQuit(messageId = 'api'): void {
    this.#pendingAction ??= { kind: 'quit', messageId };
    this.#wakeUp();
  }

  async #performPendingAction(): Promise<void> {
    const action = this.#pendingAction;
    if (!action) return;
    if (action.kind === 'quit') {
      await this.close('quit');
      return;
    }
    this.#pendingAction = undefined;
    const hook = getRestartHook();
    const event: LifecycleEvent = { processor: this, reason: 'restart command', messageId: action.messageId };
    this.events.emit('restart', event);
    if (hook) await hook(event);
    else this.logger.warn('restart requested, but no process-level restart hook is installed: ignored');
  }

  /** Identity of a delivery, to act on a control command once. @internal */
  static messageIdentity(delivery: Delivery): string {
    const id = delivery.message.properties.messageId as unknown;
    if (typeof id === 'string' && id !== '') return id;
    return `sha1:${createHash('sha1').update(delivery.message.content).digest('hex')}`;
  }

  async #dispatch(delivery: Delivery): Promise<void> {
    this.stats.received++;
    let body: MessageBody;
    let decoded = false;
    try {
      const value = this.encoder.decode(delivery.message.content);
      decoded = true;
      body = validateBody(value);
    } catch (err) {
      const reason = decoded ? 'malformed' : err instanceof PostageError ? (REASONS[err.code] ?? 'decode') : 'decode';
      this.stats.invalid[reason] = (this.stats.invalid[reason] ?? 0) + 1;
      this.#invalidLog.warn(reason, 'refused a message that is not a valid Postage body', { reason, error: (err as Error).message, queue: delivery.queue });
      await this.#fail(delivery, reason, err);
      return;
    }
    if (this.#trace) this.logger.debug('<--', { queue: delivery.queue, body });
    try {
      if (body.category === 'rpc') await this.#dispatchRpc(delivery, body);
      else await this.#dispatchMessage(delivery, body);
    } catch (err) {
      if (err instanceof RejectMessage) {
        this.stats.rejected++;
        await this.#fail(delivery, 'rejected', err);
        return;
      }
      this.stats.failed++;
      if (!loggedErrors.has(err as object)) this.logger.error('message failed', { name: body.name, type: body.type, error: (err as Error)?.message, stack: (err as Error)?.stack });
      await this.#fail(delivery, 'handler-error', err);
    }
  }

  #handlersFor(category: string, body: MessageBody): HandlerEntry[] {
    return [...(this.#handlerTable.get(routeKey(category, body.type, body.name)) ?? []), ...(this.#handlerTable.get(routeKey(category, body.type, undefined)) ?? [])];
  }

  async #dispatchMessage(delivery: Delivery, body: MessageBody): Promise<void> {
    const handlers = this.#handlersFor('message', body);
    if (handlers.length === 0) this.stats.unhandled++;
    let firstError: unknown;
    for (const [i, entry] of handlers.entries()) {
      try {
        // Each handler gets its own copy; the last one may have the freshly decoded original.
        const source = entry.receives === 'body' ? body : body.content;
        const data = await this.#applyFilters(entry, i === handlers.length - 1 ? source : structuredClone(source));
        await this.#invoke(entry, data, undefined);
      } catch (err) {
        if (err instanceof FilterError) continue;
        if (err instanceof RejectMessage) throw err;
        // One failing handler does not stop the others; the message is dead-lettered afterwards.
        this.logger.error('handler failed', { handler: entry.label, name: body.name, error: (err as Error)?.message, stack: (err as Error)?.stack });
        if (typeof err === 'object' && err !== null) loggedErrors.add(err);
        firstError ??= err;
      }
    }
    if (firstError !== undefined) throw firstError;
    this.stats.handled++;
    this.#noteControl(delivery, body);
    delivery.ack();
  }

  #noteControl(delivery: Delivery, body: MessageBody): void {
    if (body.type !== 'command' || (body.name !== 'quit' && body.name !== 'restart')) return;
    if (this.#pendingActionRequested.delete(body.name)) {
      this.#pendingAction ??= { kind: body.name, messageId: MessageProcessor.messageIdentity(delivery) };
    }
  }

  /** Set by the default `quit` / `restart` handlers; acted on after the ack. */
  readonly #pendingActionRequested = new Set<string>();

  async #dispatchRpc(delivery: Delivery, body: MessageBody): Promise<void> {
    const handlers = this.#handlersFor('rpc', body);
    const entry = handlers.at(-1);
    let replied = false;
    const reply: ReplyFunc = async (result) => {
      replied = true;
      await this.#reply(delivery, result);
    };
    if (!entry) {
      this.stats.unhandled++;
      await reply(new MessageResultError(`unknown RPC command '${body.name}' (type '${body.type}') for ${this.fingerprint.name}`));
    } else {
      try {
        const data = await this.#applyFilters(entry, entry.receives === 'body' ? body : body.content);
        const value = await this.#invoke(entry, data, reply);
        if (!replied && value !== undefined) await reply(value);
        this.stats.handled++;
      } catch (err) {
        if (err instanceof RejectMessage) throw err;
        if (!(err instanceof FilterError)) {
          // The caller gets the exception as its answer; the request itself is done and is acked.
          this.stats.failed++;
          this.logger.error('RPC handler failed', { handler: entry.label, error: (err as Error)?.message });
          await reply(errorToResult(err));
        }
      }
    }
    this.#noteControl(delivery, body);
    delivery.ack();
  }

  async #applyFilters(entry: HandlerEntry, data: unknown): Promise<unknown> {
    if (entry.filters.length === 0) return data;
    let value = data;
    for (const f of entry.filters) value = await f.fn(value, ...f.args);
    return value;
  }

  async #invoke(entry: HandlerEntry, data: unknown, reply: ReplyFunc | undefined): Promise<unknown> {
    if (typeof entry.target === 'string') {
      const fn = (this as unknown as Record<string, unknown>)[entry.target];
      if (typeof fn !== 'function') throw new TypeError(`${entry.label} is not a method`);
      return await (reply ? fn.call(this, data, reply) : fn.call(this, data));
    }
    if (isHandlerClass(entry.target)) {
      const instance = new entry.target(this, data, reply);
      return await instance.call();
    }
    throw new TypeError(`${entry.label} is neither a method nor a Handler class`);
  }

  async #reply(delivery: Delivery, result: unknown): Promise<void> {
    const replyTo = delivery.message.properties.replyTo as string | undefined;
    if (!replyTo) {
      this.logger.warn('RPC without reply_to: no answer sent', { queue: delivery.queue });
      return;
    }
    const message = result instanceof Message ? result : new MessageResult(result);
    message.setFingerprint(this.fingerprint);
    const content = this.encoder.encode(message.body);
    const correlationId = delivery.message.properties.correlationId as string | undefined;
    // Replies are at-most-once (the caller re-sends on timeout), so the request is not held
    // until the broker confirms the reply: waiting cost every RPC a confirm round trip.
    Publisher.for(this.connection)
      .reply(replyTo, content, {
        contentType: this.encoder.contentType,
        ...(correlationId === undefined ? {} : { correlationId }),
      })
      .catch((err: unknown) => this.logger.warn('could not send an RPC reply', { replyTo, error: (err as Error).message }));
  }

  /**
   * Sends a failed message to the dead-letter target with its reason, then acks it; with no
   * target, rejects it without requeue (the queue's own dead-letter exchange, if any, takes it).
   */
  async #fail(delivery: Delivery, reason: string, error: unknown): Promise<void> {
    if (!this.deadLetter) {
      delivery.reject(false);
      return;
    }
    const props = delivery.message.properties;
    const headers: Record<string, unknown> = {
      ...(props.headers ?? {}),
      'x-postage-reason': reason,
      'x-postage-error': String((error as Error)?.message ?? error).slice(0, 1000),
      'x-postage-queue': delivery.queue,
      'x-postage-app': this.fingerprint.name,
      'x-postage-redelivered': delivery.message.fields.redelivered,
    };
    try {
      await Publisher.for(this.connection).publish(this.deadLetter.exchange, this.deadLetter.routingKey, delivery.message.content, {
        headers,
        persistent: true,
        ...(props.contentType === undefined ? {} : { contentType: props.contentType as string }),
        ...(props.messageId === undefined ? {} : { messageId: props.messageId as string }),
      });
      this.stats.deadLettered++;
      delivery.ack();
    } catch (err) {
      this.logger.error('could not dead-letter a message; rejecting it', { reason, error: (err as Error).message });
      delivery.reject(false);
    }
  }

  /** In-flight handler count (for drain reports). */
  get inFlightCount(): number {
    return this.#inFlight.size;
  }

  /**
   * Graceful stop, idempotent: cancel the consumer, drain in-flight handlers (bounded by
   * `drainTimeout`, logged when it expires), then close the channel. Messages received but
   * not yet dispatched go back to their queue when the channel closes.
   */
  close(reason = 'closed'): Promise<void> {
    this.#closing ??= (async () => {
      this.state = 'stopping';
      // Received but not dispatched: they go back to their queue when the channel closes.
      this.#inbox.length = 0;
      await this.consumer.cancel().catch(() => undefined);
      await this.drain();
      await this.beforeChannelClose(reason);
      await this.consumer.close(reason);
      this.state = 'stopped';
      this.stop();
      this.events.emit('stopped', { processor: this, reason } satisfies LifecycleEvent);
    })();
    return this.#closing;
  }

  /** Waits for in-flight handlers, at most `drainTimeout` ms. */
  protected async drain(): Promise<void> {
    if (this.#inFlight.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.drainTimeout);
    });
    let outcome: 'drained' | 'timeout' = 'drained';
    // Loop: a step that was already under way may add one more handler after the snapshot.
    while (this.#inFlight.size > 0 && outcome === 'drained') {
      outcome = await Promise.race([Promise.allSettled([...this.#inFlight]).then(() => 'drained' as const), expired]);
    }
    clearTimeout(timer);
    if (outcome === 'timeout') this.logger.warn('drain timeout expired with handlers still running', { inFlight: this.#inFlight.size, timeoutMs: this.drainTimeout });
  }

  /** Hook for subclasses: runs after the drain, before the channel closes (e.g. delete a queue). */
  protected async beforeChannelClose(_reason: string): Promise<void> {}

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close('disposed');
  }

  /** Default handler: command `quit` stops this processor once the message is acked. */
  @MessageHandler('command', 'quit')
  msgQuit(_content: unknown): void {
    this.#pendingActionRequested.add('quit');
  }

  /** Default handler: command `restart` acks, then calls the process-level restart hook. */
  @MessageHandler('command', 'restart')
  msgRestart(_content: unknown): void {
    this.#pendingActionRequested.add('restart');
  }
}
brand(MessageProcessor, 'MessageProcessor');
