import type { Channel, ConsumeMessage } from 'amqplib';
import { brand, ClosedError } from '../errors.js';
import { Connection } from '../amqp/connection.js';
import type { ExchangeClass } from '../amqp/exchange.js';
import { normalizeQueue, type QueueSpec } from '../amqp/queue-flags.js';
import { JsonEncoder, type Encoder } from '../wire/encoder.js';
import { childLogger, type Logger } from '../logger.js';
import { AckBatcher } from './ack-batcher.js';

/** `eqk`: a list of [Exchange, [[queue, key], ...]] (Python's format). */
export type ExchangeQueueKeys = ReadonlyArray<readonly [ExchangeClass, ReadonlyArray<readonly [QueueSpec, string]>]>;

/** Options of `new GenericConsumer()`. */
export interface ConsumerOptions {
  /** Replaces the class-level `eqk` when given and not empty. */
  eqk?: ExchangeQueueKeys;
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
  ack(): void;
  reject(requeue: boolean): void;
}

interface Binding {
  exchange: ExchangeClass;
  queue: QueueSpec;
  key: string;
}

/**
 * A consumer with its own channel (Python's `GenericConsumer`). Queues and bindings come
 * from `eqk`; `queueBind` / `queueUnbind` change them at run time. After a reconnect the
 * consumer opens a new channel, declares everything again and resumes consuming.
 */
export class GenericConsumer {
  /** Default bindings. Default: none. */
  static eqk: ExchangeQueueKeys = [];

  readonly connection: Connection;
  readonly encoder: Encoder;
  readonly prefetch: number;
  readonly logger: Logger;
  private readonly bindings: Binding[] = [];
  /** Queue names, in declaration order, each consumed once. */
  private readonly queues = new Map<string, QueueSpec>();
  private readonly consumerTags = new Map<string, string>();
  private channel: Channel | undefined;
  private acks: AckBatcher | undefined;
  private setup: Promise<Channel> | undefined;
  private onDelivery: ((d: Delivery) => void) | undefined;
  private closedReason: string | undefined;
  /** Channels lost and opened again (connection loss, a channel error, a deleted queue). */
  reopens = 0;
  private reopenAttempt = 0;
  private reopenTimer: NodeJS.Timeout | undefined;
  private readonly onReconnect = (): void => this.resume();

  /**
   * Opens a channel again and resumes consuming, unless one is being opened already (the
   * channel's own close and the connection's reconnect both ask; only one channel results).
   */
  private resume(): void {
    if (this.closedReason || !this.onDelivery || this.setup) return;
    clearTimeout(this.reopenTimer);
    this.reopenTimer = undefined;
    this.open().then(
      () => {
        this.reopens++;
        this.reopenAttempt = 0;
        this.logger.info('consuming again', { queues: this.queueNames });
      },
      (err: unknown) => {
        this.logger.error('could not resume consuming; retrying', { reason: (err as Error).message });
        this.scheduleResume();
      },
    );
  }

  private scheduleResume(): void {
    if (this.closedReason || this.reopenTimer) return;
    const delay = Math.min(100 * 2 ** this.reopenAttempt++, 5000);
    this.reopenTimer = setTimeout(() => {
      this.reopenTimer = undefined;
      this.resume();
    }, delay);
  }

  constructor(options: ConsumerOptions = {}) {
    this.connection = options.connection ?? Connection.shared();
    this.encoder = options.encoder ?? new JsonEncoder();
    this.prefetch = options.prefetch ?? 50;
    this.logger = childLogger(options.logger ?? this.connection.logger, { consumer: this.constructor.name });
    const eqk = options.eqk && options.eqk.length > 0 ? options.eqk : (this.constructor as typeof GenericConsumer).eqk;
    this.addEqk(eqk);
    this.connection.on('reconnect', this.onReconnect);
  }

  /** Adds bindings (declared on the next `start()`, or now if already started). */
  addEqk(eqk: ExchangeQueueKeys): void {
    for (const [exchange, qks] of eqk) for (const [queue, key] of qks) this.remember({ exchange, queue, key });
  }

  private remember(b: Binding): void {
    const name = normalizeQueue(b.queue).name;
    if (!this.queues.has(name)) this.queues.set(name, b.queue);
    this.bindings.push(b);
  }

  /** Queue names this consumer reads. */
  get queueNames(): string[] {
    return [...this.queues.keys()];
  }

  /** Routing keys bound, per queue. */
  get boundKeys(): Array<{ exchange: string; queue: string; key: string }> {
    return this.bindings.map((b) => ({ exchange: b.exchange.name, queue: normalizeQueue(b.queue).name, key: b.key }));
  }

  /** The channel in use; opens it and declares the topology if needed. */
  async getChannel(): Promise<Channel> {
    if (this.closedReason) throw new ClosedError('consumer', this.closedReason);
    this.setup ??= this.declareAll();
    return this.setup;
  }

  private async declareAll(): Promise<Channel> {
    const ch = await this.connection.createChannel();
    ch.on('error', (err: Error) => this.logger.warn('consumer channel error', { reason: err.message }));
    const acks = new AckBatcher(ch);
    ch.on('close', () => {
      acks.discard();
      if (this.channel === ch) {
        this.channel = undefined;
        this.acks = undefined;
        this.setup = undefined;
        this.consumerTags.clear();
        // Not closed by us: a channel error or a lost connection. Consume again (with backoff);
        // the broker redelivers whatever this channel had not acked.
        if (!this.closedReason && this.onDelivery) {
          this.logger.warn('consumer channel closed unexpectedly; opening a new one', { queues: this.queueNames });
          this.scheduleResume();
        }
      }
    });
    await ch.prefetch(this.prefetch);
    const declared = new Set<string>();
    for (const b of this.bindings) await this.declareBinding(ch, b, declared);
    this.channel = ch;
    this.acks = acks;
    return ch;
  }

  private async declareBinding(ch: Channel, b: Binding, declared: Set<string>): Promise<void> {
    if (!declared.has(`x:${b.exchange.name}`)) {
      await b.exchange.declare(ch);
      declared.add(`x:${b.exchange.name}`);
    }
    const q = normalizeQueue(b.queue);
    if (!declared.has(`q:${q.name}`)) {
      if (q.passive) await ch.checkQueue(q.name);
      else await ch.assertQueue(q.name, q.options);
      declared.add(`q:${q.name}`);
    }
    if (b.exchange.name !== '') await ch.bindQueue(q.name, b.exchange.name, b.key);
  }

  /** Starts consuming every queue; `onDelivery` is called for each message. */
  async start(onDelivery: (d: Delivery) => void): Promise<void> {
    this.onDelivery = onDelivery;
    await this.open();
  }

  private async open(): Promise<void> {
    const ch = await this.getChannel();
    for (const name of this.queues.keys()) await this.consumeQueue(ch, name);
  }

  private async consumeQueue(ch: Channel, name: string): Promise<void> {
    const handler = this.onDelivery;
    if (!handler || this.consumerTags.has(name)) return;
    const { consumerTag } = await ch.consume(name, (msg) => {
      // A null message means the broker cancelled the consumer (e.g. the queue was deleted).
      if (!msg) {
        this.consumerTags.delete(name);
        this.logger.warn('consumer cancelled by the broker (queue deleted?): declaring and consuming again', { queue: name });
        // Closing the channel starts the same path as any lost channel: a new one declares
        // the topology again (the queue too) and consumes every queue.
        if (this.channel === ch && !this.closedReason) ch.close().catch(() => undefined);
        return;
      }
      const acks = this.acks;
      if (this.channel !== ch || !acks) return; // a late delivery on a replaced channel: the broker redelivers it
      acks.track(msg);
      handler(this.delivery(ch, acks, name, msg));
    });
    this.consumerTags.set(name, consumerTag);
  }

  private delivery(ch: Channel, acks: AckBatcher, queue: string, message: ConsumeMessage): Delivery {
    let settled = false;
    const alive = (): boolean => !settled && this.channel === ch;
    const consumer = this;
    return {
      message,
      queue,
      get stale(): boolean {
        return consumer.channel !== ch;
      },
      ack: () => {
        if (alive()) acks.ack(message);
        settled = true;
      },
      reject: (requeue: boolean) => {
        if (alive()) acks.reject(message, requeue);
        settled = true;
      },
    };
  }

  /** Declares a queue, binds it with `key` and consumes it if this consumer is started. */
  async queueBind(exchange: ExchangeClass, queue: QueueSpec, key: string): Promise<void> {
    const b: Binding = { exchange, queue, key };
    const ch = await this.getChannel();
    if (!this.bindings.some((x) => x.exchange === exchange && x.key === key && normalizeQueue(x.queue).name === normalizeQueue(queue).name)) {
      this.remember(b);
    }
    await this.declareBinding(ch, b, new Set());
    await this.consumeQueue(ch, normalizeQueue(queue).name);
  }

  /** Removes a binding (the queue stays, and is still consumed). */
  async queueUnbind(exchange: ExchangeClass, queue: QueueSpec, key: string): Promise<void> {
    const name = normalizeQueue(queue).name;
    const ch = await this.getChannel();
    await ch.unbindQueue(name, exchange.name, key);
    const i = this.bindings.findIndex((x) => x.exchange.name === exchange.name && x.key === key && normalizeQueue(x.queue).name === name);
    if (i >= 0) this.bindings.splice(i, 1);
  }

  /** Stops consuming one queue (its bindings stay, for the other consumers of a shared queue). */
  async stopConsuming(queue: string): Promise<void> {
    this.queues.delete(queue);
    for (let i = this.bindings.length - 1; i >= 0; i--) {
      if (normalizeQueue(this.bindings[i]!.queue).name === queue) this.bindings.splice(i, 1);
    }
    const tag = this.consumerTags.get(queue);
    this.consumerTags.delete(queue);
    if (tag !== undefined && this.channel) await this.channel.cancel(tag).catch(() => undefined);
  }

  /** Stops the broker from sending more messages; unacked ones stay with us until acked. */
  async cancel(): Promise<void> {
    this.onDelivery = undefined;
    const ch = this.channel;
    const tags = [...this.consumerTags.values()];
    this.consumerTags.clear();
    if (!ch) return;
    await Promise.all(tags.map((t) => ch.cancel(t).catch(() => undefined)));
  }

  /** Deletes a queue (used for an application's own queue when it quits). */
  async deleteQueue(name: string): Promise<void> {
    const ch = this.channel;
    this.acks?.flush();
    if (ch) await ch.deleteQueue(name).catch(() => undefined);
  }

  /** Cancels, then closes the channel (idempotent). Unacked messages return to their queues. */
  async close(reason = 'closed'): Promise<void> {
    if (this.closedReason) return;
    this.closedReason = reason;
    clearTimeout(this.reopenTimer);
    this.connection.off('reconnect', this.onReconnect);
    await this.cancel();
    const ch = this.channel;
    this.acks?.flush();
    this.channel = undefined;
    this.acks = undefined;
    this.setup = undefined;
    if (ch) await ch.close().catch(() => undefined);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close('disposed');
  }
}
brand(GenericConsumer, 'GenericConsumer');
