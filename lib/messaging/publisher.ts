import type { Channel, ConfirmChannel, Options } from 'amqplib';
import { ClosedError } from '../errors.js';
import type { Connection } from '../amqp/connection.js';
import type { ExchangeClass } from '../amqp/exchange.js';

const publishers = new WeakMap<Connection, Publisher>();

/**
 * The publishing side of a connection: one confirm channel shared by every producer of the
 * process. `publish()` resolves when the broker has confirmed the message, so "sent" means
 * the broker has it. Exchanges are declared once per channel before their first use.
 * @internal
 */
export class Publisher {
  private channel: Promise<ConfirmChannel> | undefined;
  /** A plain channel for RPC replies, which are at-most-once and need no confirm. */
  private replyChannel: Promise<Channel> | undefined;
  private declared = new Map<string, Promise<void>>();

  private constructor(private readonly connection: Connection) {
    connection.on('reconnect', () => this.reset());
    connection.on('close', () => this.reset());
  }

  static for(connection: Connection): Publisher {
    let p = publishers.get(connection);
    if (!p) {
      p = new Publisher(connection);
      publishers.set(connection, p);
    }
    return p;
  }

  private reset(): void {
    this.channel = undefined;
    this.replyChannel = undefined;
    this.declared.clear();
  }

  private getChannel(): Promise<ConfirmChannel> {
    if (this.connection.closed) return Promise.reject(new ClosedError('connection', this.connection.closeReason ?? 'closed'));
    if (!this.channel) {
      const opening = this.connection.createConfirmChannel().then((ch) => {
        // A channel error (e.g. publishing to a missing exchange) closes only this channel:
        // forget it so the next publish opens a fresh one.
        ch.on('error', () => undefined);
        ch.on('close', () => {
          if (this.channel === opening) this.reset();
        });
        return ch;
      });
      opening.catch(() => {
        if (this.channel === opening) this.reset();
      });
      this.channel = opening;
    }
    return this.channel;
  }

  /**
   * Publishes an RPC reply to `queue` through the default exchange, without a confirm:
   * replies are at-most-once and the caller re-sends on timeout.
   */
  async reply(queue: string, content: Buffer, options: Options.Publish): Promise<void> {
    if (this.connection.closed) throw new ClosedError('connection', this.connection.closeReason ?? 'closed');
    if (!this.replyChannel) {
      const opening = this.connection.createChannel().then((ch) => {
        ch.on('error', () => undefined);
        ch.on('close', () => {
          if (this.replyChannel === opening) this.replyChannel = undefined;
        });
        return ch;
      });
      opening.catch(() => {
        if (this.replyChannel === opening) this.replyChannel = undefined;
      });
      this.replyChannel = opening;
    }
    (await this.replyChannel).publish('', queue, content, options);
  }

  /** Declares `exchange` on the publishing channel once. */
  async declare(exchange: ExchangeClass): Promise<void> {
    if (exchange.name === '') return;
    let done = this.declared.get(exchange.name);
    if (!done) {
      done = this.connection.withChannel((ch) => exchange.declare(ch));
      done.catch(() => this.declared.delete(exchange.name));
      this.declared.set(exchange.name, done);
    }
    await done;
  }

  /** Publishes and waits for the broker's confirm. */
  async publish(exchange: ExchangeClass, key: string, content: Buffer, options: Options.Publish): Promise<void> {
    await this.declare(exchange);
    const ch = await this.getChannel();
    await new Promise<void>((resolve, reject) => {
      ch.publish(exchange.name, key, content, options, (err) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve()));
    });
  }
}
