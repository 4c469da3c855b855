import { randomUUID } from 'node:crypto';
import type { Channel, ConsumeMessage, Options } from 'amqplib';
import { ClosedError } from '../errors.js';
import type { Connection } from '../amqp/connection.js';
import type { ExchangeClass } from '../amqp/exchange.js';
import type { Encoder } from '../wire/encoder.js';
import { MessageResultError, MessageResultException, resultFromBody, type MessageResult } from '../wire/message.js';

/** RabbitMQ's direct reply-to pseudo queue: replies skip a real queue entirely. */
const DIRECT_REPLY_TO = 'amq.rabbitmq.reply-to';

/** After a timeout or a re-send, replies without a correlation id are not matched for this long. */
const AMBIGUOUS_MS = 60_000;

interface Pending {
  /** Called with every reply that carries this call's correlation id. */
  onReply(result: MessageResult): void;
  /** Called when the connection closes under the call. */
  onClose(err: Error): void;
}

/** What one RPC call publishes. @internal */
export interface RpcRequest {
  exchange: ExchangeClass;
  key: string;
  content: Buffer;
  contentType: string;
  /** Description of the call for the timeout message. */
  what: string;
}

const clients = new WeakMap<Connection, RpcClient>();

/**
 * The caller side of RPC for one connection: a single channel consuming direct reply-to,
 * correlation ids, a map of pending calls, and timers cleared on every path.
 * A Python responder answers to `reply_to` and copies `correlation_id` only if it wants;
 * pika-based Postage did not copy it, so a reply without one is matched to the oldest
 * pending call when exactly one is pending, and dropped otherwise.
 * @internal
 */
export class RpcClient {
  private channel: Promise<Channel> | undefined;
  private readonly pending = new Map<string, Pending>();
  private declared = new Set<string>();
  /** Until then, replies without a correlation id are ambiguous (see onReply). */
  private ambiguousUntil = 0;

  private constructor(private readonly connection: Connection, private readonly encoder: Encoder) {
    connection.on('reconnect', () => this.reset());
    connection.on('close', (reason: string) => {
      this.reset();
      // Nothing can answer after close: settle every pending call now rather than never.
      for (const call of [...this.pending.values()]) call.onClose(new ClosedError('connection', reason));
    });
  }

  static for(connection: Connection, encoder: Encoder): RpcClient {
    let c = clients.get(connection);
    if (!c) {
      c = new RpcClient(connection, encoder);
      clients.set(connection, c);
    }
    return c;
  }

  private reset(): void {
    this.channel = undefined;
    this.declared.clear();
  }

  private getChannel(): Promise<Channel> {
    if (this.connection.closed) return Promise.reject(new ClosedError('connection', this.connection.closeReason ?? 'closed'));
    if (!this.channel) {
      const opening = (async () => {
        const ch = await this.connection.createChannel();
        ch.on('error', () => undefined);
        ch.on('close', () => {
          if (this.channel === opening) this.reset();
        });
        await ch.consume(DIRECT_REPLY_TO, (msg) => this.onReply(msg), { noAck: true });
        return ch;
      })();
      opening.catch(() => {
        if (this.channel === opening) this.reset();
      });
      this.channel = opening;
    }
    return this.channel;
  }

  private onReply(msg: ConsumeMessage | null): void {
    if (!msg) return;
    let id = msg.properties.correlationId as string | undefined;
    // A reply without a correlation id (a pika-style responder) can only be matched when one
    // call is pending and no earlier call may still be answered late (timed out or re-sent
    // recently); otherwise it could answer the wrong call, so it is dropped.
    if (id === undefined && this.pending.size === 1 && Date.now() >= this.ambiguousUntil) id = this.pending.keys().next().value;
    // A reply whose call has already returned (timed out, or a fan-out collection closed)
    // has nobody to go to: it is dropped on purpose. Replies are at-most-once.
    const call = id === undefined ? undefined : this.pending.get(id);
    if (!call) return;
    let result: MessageResult;
    try {
      result = resultFromBody(this.encoder.decode(msg.content));
    } catch (err) {
      result = new MessageResultError(`Malformed reply: ${(err as Error).message}`);
    }
    call.onReply(result);
  }

  /** Declares an exchange once, on a channel of its own (a refusal must not kill the reply channel). */
  private async declare(exchange: ExchangeClass): Promise<void> {
    if (exchange.name === '' || this.declared.has(exchange.name)) return;
    await this.connection.withChannel((ch) => exchange.declare(ch));
    this.declared.add(exchange.name);
  }

  private async publish(req: RpcRequest, correlationId: string, messageId: string): Promise<void> {
    const ch = await this.getChannel();
    await this.declare(req.exchange);
    const options: Options.Publish = {
      replyTo: DIRECT_REPLY_TO,
      correlationId,
      messageId,
      contentType: req.contentType,
    };
    // Direct reply-to requires publishing on the channel that consumes the replies.
    ch.publish(req.exchange.name, req.key, req.content, options);
  }

  /**
   * Sends the request and waits `timeoutMs` for one reply; re-sends up to `maxRetry` times
   * with the same correlation id (a late reply to an earlier try still counts) and the same
   * message id (so a responder can recognise a re-send). Returns
   * `MessageResultException('TimeoutError', …)` when every try timed out; never throws for that.
   */
  async call(req: RpcRequest, timeoutMs: number, maxRetry: number): Promise<MessageResult> {
    const correlationId = randomUUID();
    const tries = 1 + Math.max(0, maxRetry);
    return new Promise<MessageResult>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let sent = 0;
      const finish = (result: MessageResult | Error): void => {
        clearTimeout(timer);
        this.pending.delete(correlationId);
        if (result instanceof Error) reject(result);
        else resolve(result);
      };
      const attempt = (): void => {
        if (sent >= tries) {
          this.markAmbiguous(timeoutMs);
          finish(new MessageResultException('TimeoutError', `no reply to ${req.what} after ${tries} ${tries === 1 ? 'try' : 'tries'} of ${timeoutMs} ms`));
          return;
        }
        sent++;
        if (sent > 1) this.markAmbiguous(timeoutMs * tries);
        // The try's deadline starts now, not after the publish: during a broker outage the
        // publish waits for the reconnection, and the call must still time out on schedule.
        timer = setTimeout(attempt, timeoutMs);
        // A publish that fails outright (broker unreachable, connection closed) ends the call
        // with that error; one waiting for a reconnection is covered by the deadline above.
        this.publish(req, correlationId, correlationId).catch((err: unknown) => finish(err instanceof Error ? err : new Error(String(err))));
      };
      this.pending.set(correlationId, { onReply: finish, onClose: finish });
      attempt();
    });
  }

  /** Replies without a correlation id are not matched for this long (a late one may be on its way). */
  private markAmbiguous(ms: number): void {
    // A late reply can come at any time; a minute covers slow responders without blocking
    // correlation-less replies for long.
    this.ambiguousUntil = Math.max(this.ambiguousUntil, Date.now() + Math.max(ms, AMBIGUOUS_MS));
  }

  /**
   * Sends the request once and collects every reply that arrives within `timeoutMs`
   * (fan-out keys reach many responders). Returns early once `expect` replies are in.
   */
  async collect(req: RpcRequest, timeoutMs: number, expect = Infinity): Promise<MessageResult[]> {
    const correlationId = randomUUID();
    const replies: MessageResult[] = [];
    return new Promise<MessageResult[]>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const finish = (err?: Error): void => {
        clearTimeout(timer);
        this.pending.delete(correlationId);
        this.markAmbiguous(timeoutMs); // other responders of a fan-out key may still answer
        if (err) reject(err);
        else resolve(replies);
      };
      this.pending.set(correlationId, {
        onReply: (result) => {
          replies.push(result);
          if (replies.length >= expect) finish();
        },
        onClose: finish,
      });
      timer = setTimeout(() => finish(), timeoutMs);
      this.publish(req, correlationId, correlationId).catch((err: unknown) => finish(err instanceof Error ? err : new Error(String(err))));
    });
  }

  /**
   * Python's `_queue_only`: publishes with a fresh exclusive reply queue (as Python did)
   * and returns that queue's name; read the answer with `fetch()`.
   */
  async sendQueueOnly(req: RpcRequest): Promise<string> {
    const ch = await this.getChannel();
    await this.declare(req.exchange);
    const { queue } = await ch.assertQueue('', { exclusive: true, autoDelete: true });
    ch.publish(req.exchange.name, req.key, req.content, { replyTo: queue, contentType: req.contentType, messageId: randomUUID() });
    return queue;
  }

  /** Waits up to `timeoutMs` for the reply in a queue returned by `sendQueueOnly()`. */
  async fetch(queue: string, timeoutMs: number): Promise<MessageResult> {
    // A channel of its own: consuming a queue that is gone closes the channel it is tried on.
    const ch = await this.connection.createChannel();
    ch.on('error', () => undefined);
    return new Promise<MessageResult>((resolve, reject) => {
      let done = false;
      const finish = (result: MessageResult): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        ch.deleteQueue(queue)
          .catch(() => undefined)
          .finally(() => ch.close().catch(() => undefined));
        resolve(result);
      };
      const timer = setTimeout(() => finish(new MessageResultException('TimeoutError', `no reply in ${queue} within ${timeoutMs} ms`)), timeoutMs);
      ch.consume(
        queue,
        (msg) => {
          if (!msg) return;
          try {
            finish(resultFromBody(this.encoder.decode(msg.content)));
          } catch (err) {
            finish(new MessageResultError(`Malformed reply: ${(err as Error).message}`));
          }
        },
        { noAck: true },
      ).catch((err: unknown) => {
        done = true;
        clearTimeout(timer);
        ch.close().catch(() => undefined);
        reject(err);
      });
    });
  }
}
