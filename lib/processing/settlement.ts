/**
 * Settlement: what becomes of a delivery once dispatch is done with it — ack, retry,
 * dead-letter, or reject — and the replies of RPCs. The only part of a processor that
 * publishes.
 * @internal
 */
import type { Options } from 'amqplib';
import type { Connection } from '../amqp/connection.js';
import { DefaultExchange, type ExchangeClass } from '../amqp/exchange.js';
import { normalizeQueue, type QueueSpec } from '../amqp/queue-flags.js';
import type { Delivery } from '../messaging/generic-consumer.js';
import type { Encoder } from '../wire/encoder.js';
import type { FingerprintDict } from '../wire/fingerprint.js';
import { Message, MessageResult } from '../wire/message.js';
import { currentTrace, formatTraceparent, TRACEPARENT_HEADER, TRACESTATE_HEADER } from '../wire/trace-context.js';
import type { Logger } from '../logger.js';
import { RateLimitedLog } from './rate-limited-log.js';

/** Where failed messages go instead of vanishing. */
export interface DeadLetterTarget {
  exchange: ExchangeClass;
  routingKey: string;
  /** The queue behind it, declared again if it is found missing (deleted under us). */
  queue?: QueueSpec;
}

/** Headers a retried or dead-lettered message carries. */
export const ATTEMPT_HEADER = 'x-postage-attempt';

/**
 * Set by quorum queues (RabbitMQ 3.10) when they deliver a message again: the earlier
 * deliveries that ended without an ack (a nack or reject with requeue, or the channel or
 * connection closed first, as when the process was killed). Classic queues set nothing.
 */
export const DELIVERY_COUNT_HEADER = 'x-delivery-count';

/** On a message dead-lettered for `maxDeliveries`: the broker's count of earlier deliveries. */
export const DELIVERIES_HEADER = 'x-postage-deliveries';

/** Counters settlement keeps (part of the processor's stats). @internal */
export interface SettlementStats {
  deadLettered: number;
  retried: number;
  refused: Partial<Record<string, number>>;
}

/** The reply queues of callers: RabbitMQ's direct reply-to, and server-named queues (Python's exclusive ones). */
const CALLER_QUEUE = /^(amq\.rabbitmq\.reply-to(\..*)?|amq\.gen-.*)$/;

/** @internal */
export interface SettlementOptions {
  connection: Connection;
  encoder: Encoder;
  fingerprint: FingerprintDict;
  deadLetter: DeadLetterTarget | undefined;
  /** Tries a failing message gets in all (1: no retry). */
  maxAttempts: number;
  /** Delay before a retry, in ms: doubles from `initial` up to `max`. */
  retryDelay: { initial: number; max: number };
  /** Reply only to callers' reply queues (see ProcessorOptions.strictReplies). */
  strictReplies: boolean;
  stats: SettlementStats;
  logger: Logger;
}

/** The attempt a delivery is (1 for a first delivery). */
export function attemptOf(delivery: Delivery): number {
  const n = Number((delivery.message.properties.headers as Record<string, unknown> | undefined)?.[ATTEMPT_HEADER]);
  return Number.isInteger(n) && n >= 1 ? n : 1;
}

/**
 * Earlier deliveries of this message that ended without an ack, as its quorum queue counted
 * them; 0 for a first delivery, and on a classic queue. Read on a redelivery only: on a first
 * delivery the header is whatever the publisher wrote (a copy replayed from a dead-letter
 * queue keeps the count it had), and the broker overwrites it only when it delivers again.
 */
export function deliveriesOf(delivery: Delivery): number {
  if (!delivery.message.fields.redelivered) return 0;
  const n = Number((delivery.message.properties.headers as Record<string, unknown> | undefined)?.[DELIVERY_COUNT_HEADER]);
  return Number.isInteger(n) && n > 0 ? n : 0;
}

/** @internal */
export class Settlement {
  /** Retries waiting for their delay: published at once if the processor closes. */
  readonly #waiting = new Map<Delivery, { timer: NodeJS.Timeout; run: () => Promise<void> }>();

  readonly #refusedLog: RateLimitedLog | undefined;

  constructor(private readonly options: SettlementOptions) {
    this.#refusedLog = options.strictReplies ? new RateLimitedLog(options.logger, 60_000) : undefined;
  }

  /** Messages waiting for their retry delay. */
  get waitingRetries(): number {
    return this.#waiting.size;
  }

  /**
   * Answers an RPC to its `reply_to`, copying the correlation id when the request had one.
   * Replies are at-most-once (the caller re-sends on timeout), so the request is not held
   * until the broker confirms the reply: waiting cost every RPC a confirm round trip.
   */
  reply(delivery: Delivery, result: unknown): Promise<void> {
    const props = delivery.message.properties;
    const replyTo = props.replyTo as string | undefined;
    if (!replyTo) {
      this.options.logger.warn('RPC without reply_to: no answer sent', { queue: delivery.queue });
      return Promise.resolve();
    }
    return this.replyEncoded(replyTo, props.correlationId as string | undefined, this.encodeReply(result));
  }

  /** The bytes of a reply: a plain value is wrapped in `MessageResult`; our fingerprint is set. */
  encodeReply(result: unknown): Buffer {
    const message = result instanceof Message ? result : new MessageResult(result);
    message.setFingerprint(this.options.fingerprint);
    return this.options.encoder.encode(message.body);
  }

  /** Sends an already encoded reply (a de-duplicated RPC answered again). */
  replyEncoded(replyTo: string, correlationId: string | undefined, content: Buffer): Promise<void> {
    if (this.options.strictReplies && !CALLER_QUEUE.test(replyTo)) {
      this.options.stats.refused['reply-target'] = (this.options.stats.refused['reply-target'] ?? 0) + 1;
      this.#refusedLog?.warn(replyTo, 'RPC reply refused: reply_to is not a caller\'s reply queue (strictReplies)', { replyTo });
      return Promise.resolve();
    }
    const options: Options.Publish = { contentType: this.options.encoder.contentType, ...(correlationId === undefined ? {} : { correlationId }) };
    // The reply carries the handler's span back to the caller (Python callers ignore headers).
    const trace = currentTrace();
    if (trace) options.headers = { [TRACEPARENT_HEADER]: formatTraceparent(trace), ...(trace.traceState ? { [TRACESTATE_HEADER]: trace.traceState } : {}) };
    return this.options.connection.publisher.reply(replyTo, content, options).catch((err: unknown) => {
      this.options.logger.warn('could not send an RPC reply', { replyTo, error: (err as Error).message });
    });
  }

  /**
   * A message whose handler failed: tried again later (a copy with the attempt count goes
   * back to its queue after a delay, then the original is acked) until `maxAttempts`, then
   * dead-lettered with the error and the attempt count.
   */
  async retryOrDeadLetter(delivery: Delivery, reason: string, error: unknown): Promise<void> {
    const attempt = attemptOf(delivery);
    if (attempt >= this.options.maxAttempts) {
      await this.deadLetter(delivery, reason, error);
      return;
    }
    const { initial, max } = this.options.retryDelay;
    const delay = Math.min(max, initial * 2 ** (attempt - 1));
    // The delay does not hold the processor: the delivery stays unacked (one prefetch slot)
    // while the others are handled.
    const run = async (): Promise<void> => {
      this.#waiting.delete(delivery);
      // From a channel that is gone, the broker delivers the original again: no copy.
      if (!delivery.stale) await this.#requeue(delivery, attempt + 1, error);
    };
    this.#waiting.set(delivery, { timer: setTimeout(() => void run(), delay), run });
  }

  async #requeue(delivery: Delivery, attempt: number, error: unknown): Promise<void> {
    const props = delivery.message.properties;
    const headers = { ...(props.headers ?? {}), [ATTEMPT_HEADER]: attempt, 'x-postage-error': describe(error) };
    try {
      const { routed } = await this.options.connection.publisher.publish(DefaultExchange, delivery.queue, delivery.message.content, copyProps(props, headers));
      if (!routed) throw new Error(`queue ${delivery.queue} is gone`);
      this.options.stats.retried++;
      this.options.logger.info('message failed: retrying', { queue: delivery.queue, attempt, of: this.options.maxAttempts, error: describe(error) });
      delivery.ack();
    } catch (err) {
      this.options.logger.warn('could not requeue a failed message for a retry; dead-lettering it', { error: (err as Error).message });
      await this.deadLetter(delivery, 'handler-error', error);
    }
  }

  /** Publishes every waiting retry now (the processor is closing). */
  async flushRetries(): Promise<void> {
    await Promise.all(
      [...this.#waiting.values()].map(({ timer, run }) => {
        clearTimeout(timer);
        return run();
      }),
    );
  }

  /**
   * Sends a failed message to the dead-letter target with its reason, then acks it; with no
   * target, rejects it without requeue (the queue's own dead-letter exchange, if any, takes it).
   * The publish is `mandatory`: a dead-letter queue deleted under us is declared again and the
   * message sent again, instead of vanishing. `extra` headers say more about the reason.
   */
  async deadLetter(delivery: Delivery, reason: string, error: unknown, extra: Record<string, unknown> = {}): Promise<void> {
    const target = this.options.deadLetter;
    if (!target) {
      delivery.reject(false);
      return;
    }
    const props = delivery.message.properties;
    const headers: Record<string, unknown> = {
      ...(props.headers ?? {}),
      'x-postage-reason': reason,
      'x-postage-error': describe(error),
      'x-postage-queue': delivery.queue,
      'x-postage-app': this.options.fingerprint.name,
      'x-postage-redelivered': delivery.message.fields.redelivered,
      [ATTEMPT_HEADER]: attemptOf(delivery),
      ...extra,
    };
    const publisher = this.options.connection.publisher;
    try {
      let { routed } = await publisher.publish(target.exchange, target.routingKey, delivery.message.content, copyProps(props, headers));
      if (!routed && target.queue !== undefined) {
        this.options.logger.warn('the dead-letter queue is gone: declaring it again', { queue: normalizeQueue(target.queue).name });
        await this.#declare({ ...target, queue: target.queue });
        ({ routed } = await publisher.publish(target.exchange, target.routingKey, delivery.message.content, copyProps(props, headers)));
      }
      if (!routed) throw new Error(`no queue is bound to ${target.exchange.name}/${target.routingKey}`);
      this.options.stats.deadLettered++;
      delivery.ack();
    } catch (err) {
      this.options.logger.error('could not dead-letter a message; rejecting it', { reason, error: (err as Error).message });
      delivery.reject(false);
    }
  }

  async #declare(target: DeadLetterTarget & { queue: QueueSpec }): Promise<void> {
    const q = normalizeQueue(target.queue);
    await this.options.connection.withChannel(async (ch) => {
      await target.exchange.declare(ch);
      await ch.assertQueue(q.name, q.options);
      await ch.bindQueue(q.name, target.exchange.name, target.routingKey);
    });
  }
}

function describe(error: unknown): string {
  return String((error as Error)?.message ?? error).slice(0, 1000);
}

/**
 * The properties of a copy we publish (a retry, a dead letter). Without the broker's delivery
 * count: that was the original's; on a classic queue, which never overwrites it, the copy
 * would carry it for good and could be refused by `maxDeliveries` at its first redelivery.
 */
function copyProps(props: Delivery['message']['properties'], headers: Record<string, unknown>): Options.Publish {
  const { [DELIVERY_COUNT_HEADER]: _count, ...own } = headers;
  return {
    headers: own,
    persistent: true,
    ...(props.contentType === undefined ? {} : { contentType: props.contentType as string }),
    ...(props.messageId === undefined ? {} : { messageId: props.messageId as string }),
    ...(props.correlationId === undefined ? {} : { correlationId: props.correlationId as string }),
    ...(props.replyTo === undefined ? {} : { replyTo: props.replyTo as string }),
  };
}
