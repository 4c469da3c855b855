import { randomUUID } from 'node:crypto';
import type { ConsumeMessage } from 'amqplib';
import { ClosedError } from '../errors.js';
import type { Connection } from '../amqp/connection.js';
import type { ExchangeClass } from '../amqp/exchange.js';
import type { ReplyLane } from '../amqp/reply-lanes.js';
import type { Encoder } from '../wire/encoder.js';
import { MessageResultError, MessageResultException, resultFromBody, type MessageResult } from '../wire/message.js';
import { parseTraceparent, TRACEPARENT_HEADER, TRACESTATE_HEADER } from '../wire/trace-context.js';

/** What one RPC call publishes. @internal */
export interface RpcRequest {
  exchange: ExchangeClass;
  key: string;
  content: Buffer;
  contentType: string;
  /** Extra AMQP headers of the request (e.g. the sender's time). */
  headers?: Record<string, unknown>;
  /** Description of the call for the timeout message. */
  what: string;
}

/** How one call decodes its replies (the producer's encoder: per call, not per connection). @internal */
export type ReplyDecoder = Pick<Encoder, 'decode'>;

function decodeReply(decoder: ReplyDecoder, message: ConsumeMessage): MessageResult {
  let result: MessageResult;
  try {
    result = resultFromBody(decoder.decode(message.content));
  } catch (err) {
    result = new MessageResultError(`Malformed reply: ${(err as Error).message}`);
  }
  // The responder's span, when it sent one (Python responders send no headers).
  const headers = message.properties.headers as Record<string, unknown> | undefined;
  if (headers) result.trace = parseTraceparent(headers[TRACEPARENT_HEADER], headers[TRACESTATE_HEADER]);
  return result;
}

/** The results `rpcCall` made itself because every try timed out (a responder may also answer `TimeoutError`). */
const localTimeouts = new WeakSet<MessageResult>();

/** Whether a result is the timeout `rpcCall` returned, not an answer. @internal */
export function isCallTimeout(result: MessageResult): boolean {
  return localTimeouts.has(result);
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/**
 * Sends the request and waits `timeoutMs` for one reply; re-sends up to `maxRetry` times
 * with the same correlation id (a late reply to an earlier try still counts) and the same
 * message id (so a responder can recognise a re-send). Returns
 * `MessageResultException('TimeoutError', …)` when every try timed out; never throws for that.
 *
 * The call has a reply lane (a channel) of its own, so a reply without a correlation id
 * (Python Postage's) is unambiguous. A try whose turn comes during an outage waits for the
 * connection, and is not sent if the call has ended meanwhile.
 * @internal
 */
export async function rpcCall(connection: Connection, req: RpcRequest, options: { timeoutMs: number; maxRetry: number; decoder: ReplyDecoder }): Promise<MessageResult> {
  const lanes = connection.replyLanes;
  const lane = await lanes.acquire();
  const correlationId = randomUUID();
  const tries = 1 + Math.max(0, options.maxRetry);
  let sent = 0;
  let uncorrelated = false;
  let answered = false;
  let timer: NodeJS.Timeout | undefined;
  try {
    return await new Promise<MessageResult>((resolve, reject) => {
      let done = false;
      const finish = (result: MessageResult | Error): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (result instanceof Error) reject(result);
        else resolve(result);
      };
      lane.listen({
        reply(message) {
          const id = message.properties.correlationId as string | undefined;
          // A different id is a late reply to an earlier call this lane served: not ours.
          if (id !== undefined && id !== correlationId) return;
          if (id === undefined) uncorrelated = true;
          answered = true;
          finish(decodeReply(options.decoder, message));
        },
        // Nothing can answer after close: settle now rather than never.
        closed: (reason) => finish(new ClosedError('connection', reason)),
      });
      const attempt = (): void => {
        if (sent >= tries) {
          const timeout = new MessageResultException('TimeoutError', `no reply to ${req.what} after ${tries} ${tries === 1 ? 'try' : 'tries'} of ${options.timeoutMs} ms`);
          localTimeouts.add(timeout);
          finish(timeout);
          return;
        }
        const mine = ++sent;
        // The try's deadline starts now, not after the publish (nor the exchange's
        // declaration): during a broker outage, or on a stalled connection that is not known
        // dead yet, both wait, and the call must still time out on schedule.
        timer = setTimeout(attempt, options.timeoutMs);
        // A try that waited past its deadline (for the declaration or the connection) is not
        // sent: the next try, or the timeout, has replaced it, and a late copy would only make
        // the responder run once more.
        const current = (): boolean => !done && sent === mine;
        const send = (): void => {
          if (!current()) return;
          lane
            .publish(req.exchange.name, req.key, req.content, publishOptions(req, correlationId), current)
            // A publish that fails outright (connection closed) ends the call with that error.
            .catch((err: unknown) => finish(asError(err)));
        };
        if (connection.isDeclared(req.exchange)) send();
        else connection.declareExchange(req.exchange).then(send, (err: unknown) => finish(asError(err)));
      };
      attempt();
    });
  } finally {
    // Reusable only if no reply can still come without a correlation id: one try answered,
    // or every reply carried ours (a later call would not match it).
    lanes.release(lane, answered && (sent === 1 || !uncorrelated));
  }
}

function publishOptions(req: RpcRequest, correlationId: string): { correlationId: string; messageId: string; contentType: string; headers?: Record<string, unknown> } {
  return { correlationId, messageId: correlationId, contentType: req.contentType, ...(req.headers ? { headers: req.headers } : {}) };
}

/**
 * Sends the request once and collects every reply that arrives within `timeoutMs`
 * (fan-out keys reach many responders). Returns early once `expect` replies are in.
 * Its lane is closed afterwards: more replies may still be on their way.
 * @internal
 */
export async function rpcCollect(connection: Connection, req: RpcRequest, options: { timeoutMs: number; expect: number; decoder: ReplyDecoder }): Promise<MessageResult[]> {
  const lanes = connection.replyLanes;
  const lane: ReplyLane = await lanes.acquire();
  const correlationId = randomUUID();
  const replies: MessageResult[] = [];
  let timer: NodeJS.Timeout | undefined;
  try {
    return await new Promise<MessageResult[]>((resolve, reject) => {
      let done = false;
      const finish = (err?: Error): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(replies);
      };
      lane.listen({
        reply(message) {
          const id = message.properties.correlationId as string | undefined;
          if (id !== undefined && id !== correlationId) return;
          replies.push(decodeReply(options.decoder, message));
          if (replies.length >= options.expect) finish();
        },
        closed: (reason) => finish(new ClosedError('connection', reason)),
      });
      connection
        .declareExchange(req.exchange)
        .then(() => {
          timer = setTimeout(() => finish(), options.timeoutMs);
          return lane.publish(req.exchange.name, req.key, req.content, publishOptions(req, correlationId), () => !done);
        })
        .catch((err: unknown) => finish(asError(err)));
    });
  } finally {
    lanes.release(lane, false);
  }
}

/**
 * Python's `_queue_only`: publishes with a fresh exclusive reply queue (as Python did) and
 * returns that queue's name; read the answer with {@link fetchReply}.
 * @internal
 */
export async function sendQueueOnly(connection: Connection, req: RpcRequest): Promise<string> {
  await connection.declareExchange(req.exchange);
  return connection.withChannel(async (ch) => {
    // Exclusive queues belong to the connection, not the channel: it outlives this one.
    const { queue } = await ch.assertQueue('', { exclusive: true, autoDelete: true });
    ch.publish(req.exchange.name, req.key, req.content, { replyTo: queue, contentType: req.contentType, messageId: randomUUID(), ...(req.headers ? { headers: req.headers } : {}) });
    return queue;
  });
}

/** Waits up to `timeoutMs` for the reply in a queue returned by {@link sendQueueOnly}. @internal */
export async function fetchReply(connection: Connection, queue: string, timeoutMs: number, decoder: ReplyDecoder): Promise<MessageResult> {
  // A channel of its own: consuming a queue that is gone closes the channel it is tried on.
  const ch = await connection.createChannel();
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
    ch.consume(queue, (msg) => msg && finish(decodeReply(decoder, msg)), { noAck: true }).catch((err: unknown) => {
      done = true;
      clearTimeout(timer);
      ch.close().catch(() => undefined);
      reject(asError(err));
    });
  });
}
