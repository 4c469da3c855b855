import type { Channel, ConsumeMessage } from 'amqplib';
import { brand, ClosedError } from '../errors.js';
import { Connection } from '../amqp/connection.js';
import { ChannelOwner } from '../amqp/channel-owner.js';
import type { ExchangeClass } from '../amqp/exchange.js';
import { explainDeclareError, normalizeQueue, type QueueSpec } from '../amqp/queue-flags.js';
import { JsonEncoder, type Encoder } from '../wire/encoder.js';
import { childLogger, type Logger } from '../logger.js';
import { AckBatcher } from './ack-batcher.js';

/** `eqk`: a list of [Exchange, [[queue, key], ...]] (Python's format). */
export type ExchangeQueueKeys = ReadonlyArray<readonly [ExchangeClass, ReadonlyArray<readonly [QueueSpec, string]>]>;

/** Options of `new GenericConsumer()`. */
export interface ConsumerOptions {
  /** Replaces the class-level `eqk` when given and not empty. */
  eqk?: ExchangeQueueKeys;
  /** Queues declared and bound on every (re)open but not consumed (e.g. a dead-letter queue). */
  declareOnly?: ExchangeQueueKeys;
  /** Default: `Connection.shared()`. */
  connection?: Connection;
  /** Unacknowledged messages the broker may push at once. Default: 50 (Python fixed it at 1). */
  prefetch?: number;
  encoder?: Encoder;
  logger?: Logger;
}

/**
 * One delivery, with acknowledgement functions bound to the channel it came from: an ack
 * sent on a channel opened after a reconnect would fail with "unknown delivery tag", so a
 * delivery from a dead channel is simply not acknowledged (the broker redelivers it).
 */
export interface Delivery {
  readonly message: ConsumeMessage;
  readonly queue: string;
  /** True once the channel it came from is gone: the broker will deliver it again, so do not handle it. */
  readonly stale: boolean;
  /** The lifetime of the consumer's channel it came from (1, then +1 at each reopen). */
  readonly channelGeneration: number;
  ack(): void;
  reject(requeue: boolean): void;
}

/**
 * Where a consumer is:
 * - `idle`: not started;
 * - `consuming`: its channel is open and every queue has a consumer;
 * - `recovering`: its channel was lost (or a re-declaration failed); a new one is being
 *   opened, with backoff, until it works;
 * - `cancelled`: no more deliveries; the channel stays open for the acks of those in flight;
 * - `failed`: the first start failed (nothing is retried);
 * - `closed`: final.
 */
export type ConsumerState = 'idle' | 'consuming' | 'recovering' | 'cancelled' | 'failed' | 'closed';

/** What a delivery needs to know about the channel it came from. */
interface ChannelState {
  /** The channel has closed. */
  closed(ch: Channel): boolean;
  /** The generation of the consumer's current channel. */
  generation(): number;
  /** The broker cancelled the consumer of `queue` on `ch`. */
  cancelled(ch: Channel, queue: string): boolean;
}

/** A delivery of a {@link GenericConsumer}: a class, since one is made per message. */
class ChannelDelivery implements Delivery {
  #settled = false;

  constructor(
    private readonly channelState: ChannelState,
    private readonly ch: Channel,
    readonly channelGeneration: number,
    private readonly acks: AckBatcher,
    readonly queue: string,
    readonly message: ConsumeMessage,
  ) {}

  /**
   * Not "the owner's open channel is ch": deliveries begin while a new channel is still
   * being set up (its first queue is consumed before the next ones are), when the owner
   * has no open channel yet. Skipped as stale then, they were never acked: after a
   * reconnect with a backlog, a whole prefetch window stayed unacked and consuming stopped.
   */
  #gone(): boolean {
    return this.channelState.closed(this.ch) || this.channelState.generation() !== this.channelGeneration;
  }

  #alive(): boolean {
    return !this.#settled && !this.#gone();
  }

  /**
   * When the broker cancelled the consumer (its queue deleted), what the queue delivered is
   * not delivered again: handled now, or never. (It cannot be acked on the new channel; if
   * the queue did survive, the broker delivers it again: a duplicate rather than a loss.)
   */
  get stale(): boolean {
    return this.#gone() && !this.channelState.cancelled(this.ch, this.queue);
  }

  ack(): void {
    if (this.#alive()) this.acks.ack(this.message);
    this.#settled = true;
  }

  reject(requeue: boolean): void {
    if (this.#alive()) this.acks.reject(this.message, requeue);
    this.#settled = true;
  }
}

interface Binding {
  exchange: ExchangeClass;
  queue: QueueSpec;
  key: string;
  consume: boolean;
}

/**
 * A consumer with its own channel (Python's `GenericConsumer`). Queues and bindings come
 * from `eqk`; `queueBind` / `queueUnbind` change them at run time. Its channel is held by a
 * {@link ChannelOwner}: whenever it is lost (a channel error, the connection, a queue
 * deleted under it) a new one is opened with backoff, and every queue, binding and
 * dead-letter queue is declared again before consuming resumes.
 */
export class GenericConsumer {
  /** Default bindings. Default: none. */
  static eqk: ExchangeQueueKeys = [];

  readonly connection: Connection;
  readonly encoder: Encoder;
  readonly prefetch: number;
  readonly logger: Logger;
  /** Channels lost and opened again (connection loss, a channel error, a deleted queue). */
  reopens = 0;
  /** Why the last (re)open failed, while `recovering`. */
  lastError: string | undefined;
  readonly #bindings: Binding[] = [];
  /** Queue names consumed, in declaration order. */
  readonly #queues = new Set<string>();
  /** Consumer tags of the current channel, by queue. */
  readonly #tags = new Map<string, string>();
  readonly #owner: ChannelOwner<Channel>;
  /** Channels that have closed: what they delivered comes again from the broker. */
  readonly #closed = new WeakSet<Channel>();
  /** Queues whose consumer the broker cancelled, by channel: what they delivered does not come again. */
  readonly #cancelled = new WeakMap<Channel, Set<string>>();
  #acks: AckBatcher | undefined;
  #state: ConsumerState = 'idle';
  #onDelivery: ((d: Delivery) => void) | undefined;
  #closing: Promise<void> | undefined;
  #closeReason: string | undefined;

  constructor(options: ConsumerOptions = {}) {
    this.connection = options.connection ?? Connection.shared();
    this.encoder = options.encoder ?? new JsonEncoder();
    this.prefetch = options.prefetch ?? 50;
    this.logger = childLogger(options.logger ?? this.connection.logger, { consumer: this.constructor.name });
    const eqk = options.eqk && options.eqk.length > 0 ? options.eqk : (this.constructor as typeof GenericConsumer).eqk;
    this.addEqk(eqk);
    for (const [exchange, qks] of options.declareOnly ?? []) for (const [queue, key] of qks) this.#remember({ exchange, queue, key, consume: false });
    this.#owner = new ChannelOwner<Channel>(this.connection, {
      name: `consumer ${this.constructor.name}`,
      keepOpen: true,
      logger: this.logger,
      setup: (ch, generation) => this.#setup(ch, generation),
    });
    this.#owner.on('open', (ch, generation) => this.#onOpen(ch, generation));
    this.#owner.on('lost', (generation, reason) => this.#onLost(generation, reason));
    this.#owner.on('failed', (reason) => {
      // A re-open that failed (the connection dropped again, a refused declaration): the
      // owner tries again with backoff; status shows why meanwhile.
      this.lastError = reason;
      if (this.#state === 'consuming') this.#to('recovering');
    });
  }

  get state(): ConsumerState {
    return this.#state;
  }

  /**
   * Deliveries of the current channel not yet acknowledged to the broker: how much of the
   * prefetch is in use (each consumed queue may hold up to `prefetch`). 0 without a channel.
   */
  get unacked(): number {
    return this.#acks?.unsettled ?? 0;
  }

  /** The only transition function of the consumer's state. */
  #to(next: ConsumerState): void {
    if (this.#state === 'closed') return;
    this.#state = next;
  }

  /** Adds bindings (declared on the next `start()`, or at the next re-open if started). */
  addEqk(eqk: ExchangeQueueKeys): void {
    for (const [exchange, qks] of eqk) for (const [queue, key] of qks) this.#remember({ exchange, queue, key, consume: true });
  }

  #remember(b: Binding): void {
    const name = normalizeQueue(b.queue).name;
    const exists = this.#bindings.some((x) => x.exchange.name === b.exchange.name && x.key === b.key && normalizeQueue(x.queue).name === name);
    if (!exists) this.#bindings.push(b);
    if (b.consume) this.#queues.add(name);
  }

  /** Queue names this consumer reads. */
  get queueNames(): string[] {
    return [...this.#queues];
  }

  /** The open channel, or the one being opened (for callers that must act on it). */
  getChannel(): Promise<Channel> {
    if (this.#closeReason !== undefined) return Promise.reject(new ClosedError('consumer', this.#closeReason));
    return this.#owner.get();
  }

  /** Prefetch, every declaration and binding, then a consumer on every queue. */
  async #setup(ch: Channel, generation: number): Promise<void> {
    ch.once('close', () => this.#closed.add(ch));
    await ch.prefetch(this.prefetch);
    const declared = new Set<string>();
    for (const b of this.#bindings) await this.#declare(ch, b, declared);
    this.#tags.clear();
    this.#acks = new AckBatcher(ch, this.prefetch);
    if (!this.#onDelivery) return;
    for (const name of this.#queues) await this.#consume(ch, generation, name);
  }

  async #declare(ch: Channel, b: Binding, declared: Set<string>): Promise<void> {
    if (!declared.has(`x:${b.exchange.name}`)) {
      await b.exchange.declare(ch);
      declared.add(`x:${b.exchange.name}`);
    }
    const q = normalizeQueue(b.queue);
    if (!declared.has(`q:${q.name}`)) {
      if (q.passive) await ch.checkQueue(q.name);
      else await ch.assertQueue(q.name, q.options).catch((err: unknown) => Promise.reject(explainDeclareError(err, q.name, q.options)));
      declared.add(`q:${q.name}`);
    }
    if (b.exchange.name !== '') await ch.bindQueue(q.name, b.exchange.name, b.key);
  }

  async #consume(ch: Channel, generation: number, name: string): Promise<void> {
    const handler = this.#onDelivery;
    if (!handler || this.#tags.has(name)) return;
    const { consumerTag } = await ch.consume(name, (msg) => {
      // A null message means the broker cancelled the consumer (e.g. the queue was deleted).
      if (!msg) {
        this.#tags.delete(name);
        const cancelled = this.#cancelled.get(ch) ?? new Set<string>();
        this.#cancelled.set(ch, cancelled.add(name));
        if (this.#owner.current === ch && this.#state === 'consuming') {
          this.logger.warn('consumer cancelled by the broker (queue deleted?): declaring and consuming again', { queue: name });
          // A new channel declares the topology again (the queue too) and consumes every queue.
          this.#owner.reopen('the broker cancelled the consumer');
        }
        return;
      }
      const acks = this.#acks;
      // A late delivery on a replaced channel: the broker redelivers it.
      if (this.#owner.generation !== generation || !acks || this.#state === 'cancelled' || this.#state === 'closed') return;
      acks.track(msg);
      handler(this.#delivery(ch, generation, acks, name, msg));
    });
    this.#tags.set(name, consumerTag);
  }

  #delivery(ch: Channel, generation: number, acks: AckBatcher, queue: string, message: ConsumeMessage): Delivery {
    return new ChannelDelivery(this.#channelState, ch, generation, acks, queue, message);
  }

  /** What a delivery asks about its channel: read per delivery, kept once per consumer. */
  readonly #channelState: ChannelState = {
    closed: (ch) => this.#closed.has(ch),
    generation: () => this.#owner.generation,
    cancelled: (ch, queue) => this.#cancelled.get(ch)?.has(queue) === true,
  };

  #onOpen(_ch: Channel, generation: number): void {
    if (this.#state === 'recovering') {
      this.reopens++;
      this.lastError = undefined;
      this.logger.info('consuming again', { queues: this.queueNames, channel: generation });
      this.#to('consuming');
    }
  }

  #onLost(_generation: number, reason: string): void {
    this.#acks?.discard();
    this.#acks = undefined;
    this.#tags.clear();
    if (this.#state === 'consuming') {
      // Not closed by us: a channel error, a deleted queue or a lost connection. The owner
      // opens a new channel (with backoff); the broker redelivers what this one had not acked.
      this.logger.warn('consumer channel lost; opening a new one', { queues: this.queueNames, reason });
      this.#to('recovering');
    } else if (this.#state === 'cancelled') {
      void this.#owner.close('cancelled');
    }
  }

  /**
   * Starts consuming every queue; `onDelivery` is called for each message. Rejects if the
   * first channel cannot be set up (a refused declaration names the queue); after that,
   * every loss is recovered by itself.
   */
  async start(onDelivery: (d: Delivery) => void): Promise<void> {
    if (this.#closeReason !== undefined) throw new ClosedError('consumer', this.#closeReason);
    this.#onDelivery = onDelivery;
    try {
      await this.#owner.get();
    } catch (err) {
      this.#to('failed');
      this.lastError = (err as Error)?.message;
      await this.#owner.close('start failed');
      throw err;
    }
    this.#to('consuming');
  }

  /** Declares a queue, binds it with `key` and consumes it if this consumer is started. */
  async queueBind(exchange: ExchangeClass, queue: QueueSpec, key: string): Promise<void> {
    const b: Binding = { exchange, queue, key, consume: true };
    // Declared on a channel of its own: a refusal must not kill the consuming channel.
    await this.connection.withChannel((ch) => this.#declare(ch, b, new Set()));
    this.#remember(b);
    const ch = this.#owner.current;
    if (ch && this.#state === 'consuming') await this.#consume(ch, this.#owner.generation, normalizeQueue(queue).name);
  }

  /** Removes a binding (the queue stays, and is still consumed). */
  async queueUnbind(exchange: ExchangeClass, queue: QueueSpec, key: string): Promise<void> {
    const name = normalizeQueue(queue).name;
    await this.connection.withChannel((ch) => ch.unbindQueue(name, exchange.name, key));
    const i = this.#bindings.findIndex((x) => x.exchange.name === exchange.name && x.key === key && normalizeQueue(x.queue).name === name);
    if (i >= 0) this.#bindings.splice(i, 1);
  }

  /** Stops consuming one queue (its bindings stay at the broker, for the other consumers of a shared queue). */
  async stopConsuming(queue: string): Promise<void> {
    this.#queues.delete(queue);
    for (let i = this.#bindings.length - 1; i >= 0; i--) {
      if (normalizeQueue(this.#bindings[i]!.queue).name === queue) this.#bindings.splice(i, 1);
    }
    const tag = this.#tags.get(queue);
    this.#tags.delete(queue);
    const ch = this.#owner.current;
    if (tag !== undefined && ch) await ch.cancel(tag).catch(() => undefined);
  }

  /** Stops the broker from sending more messages; unacked ones stay with us until acked. */
  async cancel(): Promise<void> {
    if (this.#state === 'closed' || this.#state === 'cancelled') return;
    this.#to('cancelled');
    this.#onDelivery = undefined;
    const ch = this.#owner.current;
    const tags = [...this.#tags.values()];
    this.#tags.clear();
    if (ch) await Promise.all(tags.map((t) => ch.cancel(t).catch(() => undefined)));
    else await this.#owner.close('cancelled'); // not consuming now: nothing to keep open
  }

  /** Deletes a queue (an application's own queue when it quits), after the pending acks. */
  async deleteQueue(name: string): Promise<void> {
    this.#acks?.flush();
    await this.connection.withChannel((ch) => ch.deleteQueue(name)).catch(() => undefined);
  }

  /**
   * Cancels, sends the pending acks, then closes the channel. Idempotent; concurrent callers
   * share one promise. Unacked messages return to their queues.
   */
  close(reason = 'closed'): Promise<void> {
    this.#closing ??= (async () => {
      this.#closeReason = reason;
      await this.cancel();
      this.#acks?.flush();
      this.#acks = undefined;
      this.#to('closed');
      await this.#owner.close(reason);
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close('disposed');
  }
}
brand(GenericConsumer, 'GenericConsumer');
