import { EventEmitter } from 'node:events';
import { brand, PostageError } from '../errors.js';
import { Connection } from '../amqp/connection.js';
import { GenericConsumer, type Delivery, type ExchangeQueueKeys } from '../messaging/generic-consumer.js';
import { SENT_AT_HEADER } from '../messaging/generic-producer.js';
import { MicroThread } from '../scheduler/micro-thread.js';
import { JsonEncoder, type Encoder } from '../wire/encoder.js';
import { Fingerprint, type FingerprintDict } from '../wire/fingerprint.js';
import { MessageResultError, MessageResultException, type MessageBody } from '../wire/message.js';
import { isControl, verifyBody, type SignatureRefusal } from '../wire/signature.js';
import { childSpan, parseTraceparent, runHandlerScope, TRACEPARENT_HEADER, TRACESTATE_HEADER, type TraceContext } from '../wire/trace-context.js';
import { childLogger, debugEnabled, type Logger } from '../logger.js';
import { Dispatcher, type InvalidReason, type LoopHold, type Outcome } from './dispatcher.js';
import { MessageHandler } from './handlers.js';
import type { ReplyFunc } from './handler.js';
import { buildHandlerTable } from './handler-table.js';
import { RateLimitedLog } from './rate-limited-log.js';
import { RpcMemory } from './rpc-memory.js';
import { DELIVERIES_HEADER, deliveriesOf, Settlement, type DeadLetterTarget } from './settlement.js';
import { traceLogger } from './trace-logger.js';

export type { DeadLetterTarget } from './settlement.js';
export type { LoopHold } from './dispatcher.js';

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
  /**
   * Milliseconds a handler may run. Past it, a message is dead-lettered (reason `timeout`), an
   * RPC is answered with a `TimeoutError` exception, and the processor goes on with the next
   * message; the handler itself cannot be stopped and is left to finish. Default: 0 (no limit).
   */
  handlerTimeout?: number;
  /** Tries a message whose handler throws gets in all before it is dead-lettered. Default: 1 (no retry). */
  maxAttempts?: number;
  /** Delay before each retry, in ms: doubles from `initial` up to `max`. Defaults: 100 and 5000. */
  retryDelay?: { initial?: number; max?: number };
  /**
   * Deliveries a message may have had without an ack before it is no longer dispatched. A
   * message whose handling kills the process (a blocked event loop killed by a watchdog, an
   * OOM kill, a crash in a native addon) is never acked, so the broker delivers it again to
   * the next process, which dies too; `maxAttempts` cannot see that, as nothing survives the
   * kill. Quorum queues count those deliveries (`x-delivery-count`): at `maxDeliveries` the
   * message is dead-lettered before any handler runs (reason `redelivered`, the count in
   * `x-postage-deliveries`) and counted in `invalid['redelivered']`. Classic queues count
   * nothing: there it never applies.
   *
   * A restart, a reconnection or an expired drain gives every unacked message one delivery
   * more; so does each crash to the messages prefetched with the one that caused it (only the
   * first over the bound from a queue in a channel's lifetime is refused: the others are
   * handled). The default leaves room for many of those: 20 deliveries without an ack means a
   * crash loop, not bad luck. Default: 20; 0: off.
   */
  maxDeliveries?: number;
  /**
   * Milliseconds an RPC's answer is remembered by the request's `message_id`: a request sent
   * again (its caller timed out and re-sent it) is answered again without running the handler
   * twice. Python callers send no `message_id`, so theirs always run. Default: 60000; 0: off.
   */
  rpcDedupeWindow?: number;
  /** Failed and undecodable messages are published here with reason headers; otherwise rejected. */
  deadLetter?: DeadLetterTarget;
  /** Queues declared (and bound) with the others, but not consumed. */
  declareOnly?: ExchangeQueueKeys;
  /**
   * Answer an RPC only when its `reply_to` is a caller's reply queue: RabbitMQ's direct
   * reply-to (`amq.rabbitmq.reply-to…`) or a server-named queue (`amq.gen-…`), which are what
   * this library and Python Postage use. Otherwise any caller could make this responder
   * publish into any queue of the vhost. Refusals are counted (`refused['reply-target']`).
   * Default: false.
   */
  strictReplies?: boolean;
  /**
   * Run the handlers of a message that carries a W3C trace context (`traceparent`) in a span
   * of it: their log lines carry `trace_id` / `span_id`, their sends and RPC reply carry the
   * trace on. A message without one (Python Postage's, or sent outside any trace) is handled
   * outside any trace: the AsyncLocalStorage this takes makes every promise of the process a
   * little dearer on Node 20 (measured in bench/metrics.bench.ts), so only traced traffic pays
   * it. `false` turns it off. Default: true.
   */
  traceContext?: boolean;
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
  /** Copies of failing messages sent back to their queue for another try. */
  retried: number;
  /** Handlers that outlived `handlerTimeout`. */
  timedOut: number;
  /** RPC requests answered again from memory (re-sent by their caller). */
  duplicates: number;
  /**
   * Messages refused before any handler, per reason: bodies that are not valid (`decode`,
   * `too-large`, `too-deep`, `malformed`), a `content_type` naming another format than the
   * encoder's (`content-type`; a message without one is decoded), and messages delivered `maxDeliveries` times
   * without an ack (`redelivered`).
   */
  invalid: Partial<Record<InvalidReason | 'redelivered', number>>;
  /**
   * Refused because of the security options, per reason: control commands with signing on
   * (`unsigned`, `bad-signature`, `stale`, `replayed`), RPC replies with strict replies on
   * (`reply-target`: a `reply_to` that is not a caller's reply queue).
   */
  refused: Partial<Record<SignatureRefusal | 'reply-target', number>>;
}

/** Why a processor stopped. */
export interface LifecycleEvent {
  processor: MessageProcessor;
  reason: string;
}

/**
 * A `quit` or `restart` command, handled and acked. The processor stops itself on `quit`;
 * what a `restart` means is up to its owner (the daemon re-execs the process).
 */
export interface ControlEvent {
  kind: 'quit' | 'restart';
  processor: MessageProcessor;
  /** The AMQP `message_id`, when the sender set one (Python Postage does not). */
  messageId: string | undefined;
  /** The key the command was sent with: it says how many applications of a process got a copy. */
  routingKey: string;
  /** When it was sent (ms), when the sender said. */
  sentAt: number | undefined;
  /** The broker delivered it before (a connection was lost before its ack). */
  redelivered: boolean;
  /**
   * For a listener that acts on the command (and will close the processor): the processor
   * takes no further message, so that the ones behind it (another restart, say) stay in
   * the queue for whoever consumes it next, instead of being handled and acked meanwhile.
   */
  hold(): void;
}

/**
 * What became of one message: `handled`, `failed` (a handler threw, or an RPC handler
 * answered with its exception), `rejected` (`RejectMessage`), `unhandled` (no handler),
 * `timeout` (past `handlerTimeout`), `invalid` (refused before any handler), `duplicate` (an
 * RPC answered again from memory), `refused` (a control command refused by signing).
 */
export type MessageOutcome = 'handled' | 'failed' | 'rejected' | 'unhandled' | 'timeout' | 'invalid' | 'duplicate' | 'refused';

/** Events of a processor. */
export interface ProcessorEvents {
  control: [event: ControlEvent];
  stopped: [event: LifecycleEvent];
  /**
   * One message is settled (acked, retried, dead-lettered or rejected): its outcome, how long
   * its handlers ran in ms (0 when none ran), and its category (`message`, `rpc`; empty for
   * an invalid body). For metrics; emitted only when something listens, and with plain
   * arguments, so that a message costs no allocation for it.
   */
  settled: [outcome: MessageOutcome, durationMs: number, category: string];
}

/** Where a processor is: `recovering` while its consumer opens a lost channel again. */
export type ProcessorState = 'created' | 'starting' | 'running' | 'recovering' | 'stopping' | 'stopped' | 'failed';

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

const TIMED_OUT = Symbol('timed out');

/** The trace context a delivery's sender put in its headers, if any. */
function traceOf(delivery: Delivery): TraceContext | undefined {
  const headers = delivery.message.properties.headers as Record<string, unknown> | undefined;
  return headers === undefined ? undefined : parseTraceparent(headers[TRACEPARENT_HEADER], headers[TRACESTATE_HEADER]);
}

/**
 * Whether a `content_type` property names the media type `expected`, case aside and with any
 * parameters (`; charset=utf-8`) ignored. An empty one counts as none.
 */
function sameMediaType(contentType: unknown, expected: string): boolean {
  if (typeof contentType !== 'string') return false;
  const type = contentType.split(';', 1)[0]!.trim().toLowerCase();
  return type === '' || type === expected.toLowerCase();
}

/** The reply function of a `message` (its handlers get none): nothing to answer. */
const NO_REPLY: ReplyFunc = () => Promise.resolve();

/**
 * A microthread that owns a consumer and dispatches each message to its handlers
 * (Python's `MessageProcessor`, SPEC §2). Its parts:
 * - the consumer brings deliveries into an inbox;
 * - `step()` takes them one by one, up to `concurrency` at once;
 * - the dispatcher (dispatcher.ts) decodes and runs the handlers: for `message`, every
 *   handler for (type, name) in registration order, each on its own deep copy; for `rpc`,
 *   only the last registered one;
 * - settlement (settlement.ts) acks, retries, dead-letters, and sends RPC replies; a message
 *   is acked only after all its handlers have finished (async ones included);
 * - after the ack of a `quit` or `restart`, a `control` event; `quit` also closes it.
 */
export class MessageProcessor extends MicroThread {
  static eqk: ExchangeQueueKeys = [];

  readonly fingerprint: FingerprintDict;
  readonly consumer: GenericConsumer;
  readonly connection: Connection;
  readonly encoder: Encoder;
  readonly logger: Logger;
  readonly events = new EventEmitter<ProcessorEvents>();
  readonly stats: ProcessorStats = { received: 0, handled: 0, failed: 0, rejected: 0, deadLettered: 0, unhandled: 0, retried: 0, timedOut: 0, duplicates: 0, invalid: {}, refused: {} };
  protected readonly concurrency: number;
  protected readonly drainTimeout: number;
  protected readonly handlerTimeout: number;
  protected readonly maxDeliveries: number;
  #lifecycle: 'created' | 'starting' | 'running' | 'stopping' | 'stopped' | 'failed' = 'created';
  readonly #dispatcher: Dispatcher;
  readonly #settlement: Settlement;
  readonly #rpcMemory: RpcMemory | undefined;
  readonly #inbox: Delivery[] = [];
  readonly #inFlight = new Set<Promise<void>>();
  /** Handlers past their timeout, still running in the background. */
  #abandoned = 0;
  #wake: (() => void) | undefined;
  #closing: Promise<void> | undefined;
  readonly #invalidLog: RateLimitedLog;
  readonly #refusedLog: RateLimitedLog;
  /** Per queue, the channel lifetime in which a delivery over `maxDeliveries` was refused. */
  readonly #overLimitIn = new Map<string, number>();
  readonly #started = deferred();
  /** A control listener acts on a command: take no further message. */
  #held = false;
  /** Set by the default `quit` / `restart` handlers, read after the ack of that message. */
  readonly #controlRequested = new Set<'quit' | 'restart'>();
  /** Whether per-message debug tracing is on (building its metadata costs on a hot path). */
  readonly #trace: boolean;
  /** Whether handlers run in their message's trace context. */
  readonly #traceContext: boolean;

  constructor(options: ProcessorOptions = {}) {
    super();
    const fp = options.fingerprint instanceof Fingerprint ? options.fingerprint.asDict() : options.fingerprint;
    this.connection = options.connection ?? Connection.shared();
    this.fingerprint = { ...new Fingerprint({ name: this.constructor.name, type: 'processor', vhost: this.connection.vhost, host: this.connection.identity.host }).asDict(), ...(fp ?? {}) };
    this.encoder = options.encoder ?? new JsonEncoder();
    // Lines logged while a handler runs carry its trace id (trace-logger.ts).
    this.logger = traceLogger(childLogger(options.logger ?? this.connection.logger, { app: this.fingerprint.name }));
    this.concurrency = Math.max(1, options.concurrency ?? 1);
    this.drainTimeout = options.drainTimeout ?? 10_000;
    this.handlerTimeout = options.handlerTimeout ?? 0;
    this.maxDeliveries = Math.max(0, options.maxDeliveries ?? 20);
    const statics = this.constructor as typeof MessageProcessor;
    this.consumer = new GenericConsumer({
      connection: this.connection,
      encoder: this.encoder,
      logger: this.logger,
      eqk: options.eqk ?? statics.eqk,
      ...(options.declareOnly ? { declareOnly: options.declareOnly } : {}),
      ...(options.prefetch === undefined ? {} : { prefetch: options.prefetch }),
    });
    this.#dispatcher = new Dispatcher(this, buildHandlerTable(this.constructor, MessageProcessor), this.encoder, this.logger, this.fingerprint.name);
    this.#settlement = new Settlement({
      connection: this.connection,
      encoder: this.encoder,
      fingerprint: this.fingerprint,
      deadLetter: options.deadLetter,
      maxAttempts: Math.max(1, options.maxAttempts ?? 1),
      strictReplies: options.strictReplies ?? false,
      retryDelay: { initial: options.retryDelay?.initial ?? 100, max: options.retryDelay?.max ?? 5000 },
      stats: this.stats,
      logger: this.logger,
    });
    const window = options.rpcDedupeWindow ?? 60_000;
    this.#rpcMemory = window > 0 ? new RpcMemory(window) : undefined;
    this.#invalidLog = new RateLimitedLog(this.logger, 1000);
    this.#refusedLog = new RateLimitedLog(this.logger, 60_000);
    this.#trace = debugEnabled(this.logger);
    this.#traceContext = options.traceContext ?? true;
  }

  /** `created` → `starting` → `running` (consuming; `recovering` while a lost channel is re-opened) → `stopping` → `stopped`; or `failed` if it never started. */
  get state(): ProcessorState {
    if (this.#lifecycle === 'running' && this.consumer.state === 'recovering') return 'recovering';
    return this.#lifecycle;
  }

  /** Why the consumer is recovering (or why the start failed), for `status`. */
  get problem(): string | undefined {
    return this.state === 'recovering' || this.state === 'failed' ? this.consumer.lastError : undefined;
  }

  /** Adds bindings at run time (Python's `add_eqk`). */
  async addEqk(eqk: ExchangeQueueKeys): Promise<void> {
    for (const [exchange, qks] of eqk) for (const [queue, key] of qks) await this.consumer.queueBind(exchange, queue, key);
  }

  /** Starts consuming. Called once by the scheduler. */
  override async create(): Promise<void> {
    this.#lifecycle = 'starting';
    try {
      await this.consumer.start((delivery) => {
        this.#inbox.push(delivery);
        this.#wakeUp();
      });
    } catch (err) {
      this.#lifecycle = 'failed';
      const explained = this.explainStartError(err);
      this.#started.reject(explained);
      throw explained;
    }
    if (this.#lifecycle === 'starting') this.#lifecycle = 'running';
    this.#started.resolve();
  }

  /** The scheduler saw create() (a subclass's, maybe) or step() throw: a start that never finished has failed. */
  override crashed(error: unknown): void {
    if (this.#lifecycle === 'created' || this.#lifecycle === 'starting') {
      this.#lifecycle = 'failed';
      this.#started.reject(error);
    }
  }

  /** Resolves once the processor consumes all its queues; rejects if starting failed. */
  ready(): Promise<void> {
    return this.#started.promise;
  }

  /** True while every queue has a consumer. */
  get consuming(): boolean {
    return this.state === 'running';
  }

  #wakeUp(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  /**
   * Dispatches the next message, waiting for one if there is none. A delivery that wakes an
   * idle processor is handled in the same step, in the turn it arrived: returning to the
   * scheduler first cost every RPC an event-loop turn before its handler ran.
   */
  override async step(): Promise<void> {
    let delivery = this.#next();
    if (!delivery) {
      await this.#waitForDelivery();
      if (!this.running) return;
      delivery = this.#next();
      if (!delivery) return;
    }
    const work = this.#work(delivery);
    this.#inFlight.add(work);
    if (this.concurrency === 1) {
      // In order, one at a time: this message is the one to wait for.
      await work;
      this.#inFlight.delete(work);
      return;
    }
    void work.then(() => {
      this.#inFlight.delete(work);
      this.#wakeUp();
    });
    if (this.#inFlight.size >= this.concurrency) await Promise.race(this.#inFlight);
  }

  /** The next delivery to handle, unless the processor takes no more. */
  #next(): Delivery | undefined {
    if (this.#takesNoMore()) return undefined;
    let delivery = this.#inbox.shift();
    // A delivery from a channel that is gone will be delivered again by the broker: handling
    // it now would handle it twice (its ack could not be sent anyway).
    while (delivery?.stale) delivery = this.#inbox.shift();
    return delivery;
  }

  #takesNoMore(): boolean {
    return this.#lifecycle === 'stopping' || this.#lifecycle === 'stopped' || this.#held;
  }

  /** Resolves when a delivery arrives, a handler finishes, or the thread is stopped. */
  #waitForDelivery(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#wake = resolve;
      if ((this.#inbox.length > 0 && !this.#takesNoMore()) || !this.running) this.#wakeUp();
    });
  }

  /** Handles one delivery; never rejects. */
  async #work(delivery: Delivery): Promise<void> {
    try {
      await this.#handle(delivery);
    } catch (err) {
      // #handle settles every failure itself; this is the last line, so that nothing a
      // handler does can reach the scheduler or amqplib's event path.
      this.logger.error('message dispatch failed unexpectedly', { error: (err as Error)?.message });
      delivery.reject(false);
    }
  }

  override stop(): void {
    super.stop();
    this.#wakeUp();
  }

  /** Stops this processor as the `quit` command does. */
  requestQuit(): void {
    void this.close('quit');
  }

  async #handle(delivery: Delivery): Promise<void> {
    this.stats.received++;
    // Before decoding: decoding it may be what killed the processes it went to before.
    const deliveries = deliveriesOf(delivery);
    if (this.maxDeliveries > 0 && deliveries >= this.maxDeliveries && this.#firstOverLimit(delivery)) {
      const error = new Error(`delivered ${deliveries} times without an ack (maxDeliveries ${this.maxDeliveries}): the processes handling it may have died of it`);
      await this.#refuse(delivery, 'redelivered', error, 'refused a message delivered too often without an ack: dead-lettered, not handled', { [DELIVERIES_HEADER]: deliveries });
      return;
    }
    const contentType = delivery.message.properties.contentType as unknown;
    if (contentType !== undefined && contentType !== this.encoder.contentType && !sameMediaType(contentType, this.encoder.contentType)) {
      const error = new PostageError('POSTAGE_ERR_DECODE', `content type ${JSON.stringify(String(contentType).slice(0, 100))} is not ${this.encoder.contentType}`);
      await this.#refuse(delivery, 'content-type', error, 'refused a message that is not a valid Postage body');
      return;
    }
    const decoded = this.#dispatcher.decode(delivery.message.content);
    if (!decoded.ok) {
      await this.#refuse(delivery, decoded.reason, decoded.error, 'refused a message that is not a valid Postage body');
      return;
    }
    const sent = this.#traceContext ? traceOf(delivery) : undefined;
    if (!sent) return this.#handleBody(delivery, decoded.body);
    // The handlers run in a span of the sender's trace: their logs, sends and RPC reply carry it.
    await runHandlerScope(childSpan(sent), this.fingerprint.name, () => this.#handleBody(delivery, decoded.body));
  }

  /**
   * A message refused before any handler: counted per reason, logged at most once a second per
   * reason (a flood of them must not flood the log), answered when a caller waits for an answer
   * (instead of sending the request again), and dead-lettered with `headers`.
   */
  /**
   * Whether `delivery` is the first over `maxDeliveries` from its queue in its channel's
   * lifetime. A process that dies returns every unacked message, each counted once more: the
   * one it died on and the prefetched ones behind it, never handled. A queue keeps their order
   * and what came before was acked, so the first is the one the processes died on; the rest
   * are handled. (Another bad one among them costs one more death, then goes the same way.)
   */
  #firstOverLimit(delivery: Delivery): boolean {
    if (this.#overLimitIn.get(delivery.queue) === delivery.channelGeneration) return false;
    this.#overLimitIn.set(delivery.queue, delivery.channelGeneration);
    return true;
  }

  async #refuse(delivery: Delivery, reason: InvalidReason | 'redelivered', error: Error, logLine: string, headers: Record<string, unknown> = {}): Promise<void> {
    this.stats.invalid[reason] = (this.stats.invalid[reason] ?? 0) + 1;
    this.#invalidLog.warn(reason, logLine, { reason, error: error.message, queue: delivery.queue });
    if (delivery.message.properties.replyTo) {
      const what = reason === 'redelivered' ? 'request refused' : 'malformed request';
      await this.#settlement.reply(delivery, new MessageResultError(`${what} (${reason}): ${error.message}`));
    }
    await this.#settlement.deadLetter(delivery, reason, error, headers);
    this.#settled('invalid', 0, '');
  }

  async #handleBody(delivery: Delivery, body: MessageBody): Promise<void> {
    if (this.#trace) this.logger.debug('<--', { queue: delivery.queue, body });
    if (this.connection.signing && isControl(body) && this.#refuseControl(delivery, body)) {
      this.#settled('refused', 0, body.category);
      return;
    }
    if (body.category === 'rpc' && this.#rpcMemory?.answerAgain(delivery, this.#settlement)) {
      this.stats.duplicates++;
      delivery.ack();
      this.#settled('duplicate', 0, body.category);
      return;
    }
    const reply = body.category === 'rpc' ? this.#replier(delivery) : NO_REPLY;
    const observed = this.events.listenerCount('settled') > 0;
    const t0 = observed ? performance.now() : 0;
    const dispatch = this.#dispatcher.dispatch(body, reply);
    const outcome = this.handlerTimeout > 0 ? await this.#withTimeout(dispatch, body) : await dispatch;
    if (outcome !== TIMED_OUT && (outcome.kind === 'handled' || outcome.kind === 'unhandled')) this.#ack(delivery, body, outcome);
    else await this.#settleFailure(delivery, body, outcome, reply);
    if (observed) this.#settled(outcome === TIMED_OUT ? 'timeout' : outcome.kind === 'handled' && outcome.rpcFailed !== undefined ? 'failed' : outcome.kind, performance.now() - t0, body.category);
  }

  /** Tells `settled` listeners, if there are any. */
  #settled(outcome: MessageOutcome, durationMs: number, category: string): void {
    if (this.events.listenerCount('settled') > 0) this.events.emit('settled', outcome, durationMs, category);
  }

  /** How an RPC is answered: remembered by its message id when de-duplication is on. */
  #replier(delivery: Delivery): ReplyFunc {
    if (this.#rpcMemory) return this.#rpcMemory.replier(delivery, this.#settlement);
    return (result: unknown) => this.#settlement.reply(delivery, result);
  }

  /**
   * With signing on, a control command must be signed for the key it came with, recently,
   * and not seen before; otherwise it is acked and dropped (not dead-lettered: it is a
   * refused order, not a message that failed), counted, and logged once per sender and
   * reason per minute.
   */
  #refuseControl(delivery: Delivery, body: MessageBody): boolean {
    const signing = this.connection.signing;
    if (!signing) return false;
    const fp = this.fingerprint;
    const scope = `${fp.name}:${fp.pid}@${fp.host}`;
    const refusal = verifyBody(body, delivery.message.fields.routingKey, {
      secrets: signing.secrets,
      maxAgeMs: signing.maxAgeMs,
      remember: (nonce, ts) => signing.nonces.remember(scope, nonce, ts),
    });
    if (refusal === undefined) return false;
    this.stats.refused[refusal] = (this.stats.refused[refusal] ?? 0) + 1;
    const sender = `${body.fingerprint['name'] ?? '?'}:${body.fingerprint['pid'] ?? '?'}@${body.fingerprint['host'] ?? '?'}`;
    this.#refusedLog.warn(`${refusal} ${sender}`, `refused a control command: ${refusal}`, { command: body.name, reason: refusal, sender, key: delivery.message.fields.routingKey });
    delivery.ack();
    return true;
  }

  /** Races a dispatch against `handlerTimeout`. */
  async #withTimeout(dispatch: Promise<Outcome>, body: MessageBody): Promise<Outcome | typeof TIMED_OUT> {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<typeof TIMED_OUT>((resolve) => {
      timer = setTimeout(() => resolve(TIMED_OUT), this.handlerTimeout);
    });
    const result = await Promise.race([dispatch, expired]);
    clearTimeout(timer);
    if (result === TIMED_OUT) {
      this.#abandoned++;
      void dispatch.finally(() => this.#abandoned--);
      this.logger.error('handler did not finish in time: its message is given up, the application goes on', { name: body.name, timeoutMs: this.handlerTimeout });
    }
    return result;
  }

  /** Every handler ran, or nothing handles it: acked. */
  #ack(delivery: Delivery, body: MessageBody, outcome: Outcome & { kind: 'handled' | 'unhandled' }): void {
    if (outcome.kind === 'unhandled') this.stats.unhandled++;
    else if (outcome.rpcFailed !== undefined) this.stats.failed++;
    else this.stats.handled++;
    delivery.ack();
    this.#afterAck(delivery, body);
  }

  /** A timeout, a rejection or a failure: answered, retried or dead-lettered. */
  async #settleFailure(delivery: Delivery, body: MessageBody, outcome: Outcome | typeof TIMED_OUT, reply: (result: unknown) => Promise<void>): Promise<void> {
    if (outcome === TIMED_OUT) {
      this.stats.timedOut++;
      if (body.category === 'rpc') {
        await reply(new MessageResultException('TimeoutError', `the handler of '${body.name}' did not finish within ${this.handlerTimeout} ms`));
        delivery.ack();
      } else await this.#settlement.deadLetter(delivery, 'timeout', new Error(`handler did not finish within ${this.handlerTimeout} ms`));
      return;
    }
    switch (outcome.kind) {
      case 'rejected':
        this.stats.rejected++;
        await this.#settlement.deadLetter(delivery, 'rejected', outcome.error);
        return;
      case 'failed':
        this.stats.failed++;
        await this.#settlement.retryOrDeadLetter(delivery, 'handler-error', outcome.error);
        return;
      default:
        this.#ack(delivery, body, outcome);
    }
  }

  /** After the ack of a `quit` or `restart` its default handler saw: tell the owner, and stop on `quit`. */
  #afterAck(delivery: Delivery, body: MessageBody): void {
    if (body.type !== 'command' || (body.name !== 'quit' && body.name !== 'restart')) return;
    if (!this.#controlRequested.delete(body.name)) return;
    const props = delivery.message.properties;
    const sentAt = Number((props.headers as Record<string, unknown> | undefined)?.[SENT_AT_HEADER]);
    const event: ControlEvent = {
      kind: body.name,
      processor: this,
      messageId: typeof props.messageId === 'string' && props.messageId !== '' ? props.messageId : undefined,
      routingKey: delivery.message.fields.routingKey,
      sentAt: Number.isFinite(sentAt) && sentAt > 0 ? sentAt : undefined,
      redelivered: delivery.message.fields.redelivered,
      hold: () => {
        this.#held = true;
      },
    };
    if (body.name === 'restart' && this.events.listenerCount('control') === 0) {
      this.logger.warn('restart requested, but nothing here restarts the process (no control listener): ignored');
    }
    this.events.emit('control', event);
    if (body.name === 'quit') void this.close('quit');
  }

  /** In-flight handler count (for drain reports). */
  get inFlightCount(): number {
    return this.#inFlight.size;
  }

  /** The last handler call that held the event loop for 50 ms or more (its synchronous part). */
  get lastLoopHold(): LoopHold | undefined {
    return this.#dispatcher.lastHold;
  }

  /** Handlers past `handlerTimeout` that are still running. */
  get abandonedCount(): number {
    return this.#abandoned;
  }

  /**
   * Graceful stop, idempotent: cancel the consumer, drain in-flight handlers (bounded by
   * `drainTimeout`, logged when it expires), send waiting retries, then close the channel.
   * Messages received but not yet dispatched go back to their queue when the channel closes.
   */
  close(reason = 'closed'): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#lifecycle !== 'failed') this.#lifecycle = 'stopping';
      // Received but not dispatched: they go back to their queue when the channel closes.
      this.#inbox.length = 0;
      await this.consumer.cancel().catch(() => undefined);
      await this.drain();
      await this.#settlement.flushRetries();
      await this.beforeChannelClose(reason);
      await this.consumer.close(reason);
      if (this.#lifecycle !== 'failed') this.#lifecycle = 'stopped';
      this.stop();
      this.events.emit('stopped', { processor: this, reason });
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

  /** Hook for subclasses: a failed start, with what the subclass knows about it added. */
  protected explainStartError(error: unknown): unknown {
    return error;
  }

  /** Hook for subclasses: runs after the drain, before the channel closes (e.g. delete a queue). */
  protected async beforeChannelClose(_reason: string): Promise<void> {}

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close('disposed');
  }

  /** Default handler: command `quit` stops this processor once the message is acked. */
  @MessageHandler('command', 'quit')
  msgQuit(_content: unknown): void {
    this.#controlRequested.add('quit');
  }

  /** Default handler: command `restart` acks, then emits `control` for the process owner. */
  @MessageHandler('command', 'restart')
  msgRestart(_content: unknown): void {
    this.#controlRequested.add('restart');
  }
}
brand(MessageProcessor, 'MessageProcessor');
