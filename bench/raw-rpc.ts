/**
 * The raw amqplib RPC client every bench uses as its baseline caller and as its control
 * channel to a daemon: one channel consuming direct reply-to, correlation ids, a pending map,
 * timers cleared on every path (the shape of @cloudamqp/amqp-client's RPC client).
 *
 * `mandatory` calls fail at once with `Unroutable` when no queue is bound to the key (the
 * broker returns the message), so a bench can poll for an application that is still starting
 * without waiting for timeouts.
 */
import { randomUUID } from 'node:crypto';
import type { Channel, ChannelModel, ConsumeMessage, Message } from 'amqplib';
import { RpcCommand } from 'postage';

/** The broker returned the request: no queue is bound to that key (yet). */
export class Unroutable extends Error {
  override name = 'Unroutable';
}

interface Pending {
  resolve(msg: ConsumeMessage): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export interface CallOptions {
  /** Milliseconds before the call fails. Default: 10000. */
  timeoutMs?: number;
  /** Ask the broker to return the request when nothing is bound to the key. Default: false. */
  mandatory?: boolean;
}

export class RawRpcClient {
  private readonly pending = new Map<string, Pending>();
  private constructor(private readonly ch: Channel) {}

  static async open(conn: ChannelModel): Promise<RawRpcClient> {
    const ch = await conn.createChannel();
    const client = new RawRpcClient(ch);
    ch.on('return', (msg: Message) => client.settle(msg.properties.correlationId as string | undefined, new Unroutable(`no queue bound to ${msg.fields.routingKey}`)));
    await ch.consume('amq.rabbitmq.reply-to', (msg) => msg && client.settle(msg.properties.correlationId as string | undefined, msg), { noAck: true });
    return client;
  }

  private settle(id: string | undefined, outcome: ConsumeMessage | Error): void {
    const call = id === undefined ? undefined : this.pending.get(id);
    // A reply to a call that timed out has nobody waiting: dropped.
    if (!call || id === undefined) return;
    this.pending.delete(id);
    clearTimeout(call.timer);
    if (outcome instanceof Error) call.reject(outcome);
    else call.resolve(outcome);
  }

  /** Publishes `content` to `exchange`/`key` with a reply-to and waits for the reply. */
  call(exchange: string, key: string, content: Buffer, options: CallOptions = {}): Promise<ConsumeMessage> {
    const correlationId = randomUUID();
    const timeoutMs = options.timeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(correlationId);
        reject(new Error(`raw RPC to ${exchange}/${key} got no reply in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(correlationId, { resolve, reject, timer });
      this.ch.publish(exchange, key, content, {
        replyTo: 'amq.rabbitmq.reply-to',
        correlationId,
        contentType: 'application/json',
        ...(options.mandatory ? { mandatory: true } : {}),
      });
    });
  }

  /** Calls and decodes the reply's `content.value` (a Postage `MessageResult`); throws on a failed result. */
  async value<T>(exchange: string, key: string, content: Buffer, options: CallOptions = {}): Promise<T> {
    const reply = await this.call(exchange, key, content, options);
    const body = JSON.parse(reply.content.toString('utf8')) as { content?: { type?: string; value?: unknown; message?: string } };
    if (body.content?.type !== 'success') throw new Error(`RPC to ${key} answered ${body.content?.type ?? 'nothing'}: ${body.content?.message ?? ''}`);
    return body.content.value as T;
  }

  async close(): Promise<void> {
    for (const [id, call] of this.pending) {
      clearTimeout(call.timer);
      call.reject(new Error('client closed'));
      this.pending.delete(id);
    }
    await this.ch.close().catch(() => undefined);
  }
}

/** The encoded body of a Postage RPC command, as any Postage client sends it. */
export function rpcBody(command: string, parameters: unknown = {}): Buffer {
  return Buffer.from(JSON.stringify(new RpcCommand(command, parameters).setFingerprint({ name: 'bench', type: 'bench' }).body));
}
