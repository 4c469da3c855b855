import type { Channel, ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import { PostageError } from '../errors.js';
import type { Logger } from '../logger.js';
import { ChannelOwner, type ChannelSource } from './channel-owner.js';
import type { ExchangeClass } from './exchange.js';

/** What a confirmed publish tells. */
export interface PublishResult {
  /**
   * False when no queue was bound to the key: the broker confirmed the message and dropped
   * it (it returns `mandatory` messages it cannot route, before the confirm).
   */
  routed: boolean;
}

/** What the publisher needs from its connection. @internal */
export interface PublisherSource extends ChannelSource {
  declareExchange(exchange: ExchangeClass): Promise<void>;
  /** True once `declareExchange(exchange)` is done: no need to wait for it. */
  isDeclared(exchange: ExchangeClass): boolean;
}

interface Pending {
  exchange: string;
  key: string;
  content: Buffer;
  options: Options.Publish;
  channel: ConfirmChannel | undefined;
  returned: boolean;
  resent: boolean;
  resolve(result: PublishResult): void;
  reject(err: Error): void;
}

/**
 * The publishing side of a connection: one confirm channel, every message `mandatory`, so
 * `publish()` resolves once the broker has the message and says whether it was routed.
 *
 * When the broker refuses a publish (an exchange deleted since it was declared, no write
 * permission), it closes the channel, and every publish still waiting for its confirm on it
 * would fail with it. The broker's error names the exchange: publishes to that exchange fail
 * with that error; the others, which the broker dropped unread with the closing channel,
 * are sent once more on a new channel (at-least-once: one confirmed just before the close
 * but not yet acknowledged to us could arrive twice). A publish waiting for a connection
 * (an outage) is sent once connected and confirmed then; one in flight when the connection
 * is lost is refused with an error, since the broker may or may not have it.
 * @internal
 */
export class Publisher {
  readonly #owner: ChannelOwner<ConfirmChannel>;
  /** A plain channel for RPC replies, which are at-most-once and need no confirm. */
  readonly #replies: ChannelOwner<Channel>;
  readonly #inFlight = new Set<Pending>();
  /** The broker's reason for closing each channel. */
  readonly #closeError = new WeakMap<ConfirmChannel, Error>();

  constructor(
    private readonly source: PublisherSource,
    private readonly logger: Logger,
  ) {
    this.#owner = new ChannelOwner<ConfirmChannel>(source, {
      name: 'publisher',
      confirm: true,
      logger,
      setup: async (ch) => {
        ch.on('return', (message: ConsumeMessage) => this.#onReturn(ch, message));
        ch.on('error', (err: Error) => this.#closeError.set(ch, err));
      },
    });
    this.#replies = new ChannelOwner<Channel>(source, { name: 'rpc replies', logger });
  }

  /**
   * Publishes an RPC reply to `queue` through the default exchange, without a confirm:
   * replies are at-most-once and the caller re-sends on timeout. Waiting for a confirm cost
   * every RPC a round trip.
   */
  async reply(queue: string, content: Buffer, options: Options.Publish): Promise<void> {
    (this.#replies.current ?? (await this.#replies.get())).publish('', queue, content, options);
  }

  /**
   * Publishes and resolves once the broker has confirmed the message. Once the exchange is
   * declared and the channel open, the message goes out in the caller's turn.
   */
  publish(exchange: ExchangeClass, key: string, content: Buffer, options: Options.Publish = {}): Promise<PublishResult> {
    return new Promise<PublishResult>((resolve, reject) => {
      const p: Pending = { exchange: exchange.name, key, content, options, channel: undefined, returned: false, resent: false, resolve, reject };
      if (this.source.isDeclared(exchange)) this.#send(p);
      else this.source.declareExchange(exchange).then(() => this.#send(p), reject);
    });
  }

  #send(p: Pending): void {
    const ch = this.#owner.current;
    if (ch) this.#sendOn(ch, p);
    else this.#owner.get().then((opened) => this.#sendOn(opened, p), (err: unknown) => p.reject(err as Error));
  }

  #sendOn(ch: ConfirmChannel, p: Pending): void {
    p.channel = ch;
    p.returned = false;
    this.#inFlight.add(p);
    try {
      ch.publish(p.exchange, p.key, p.content, { ...p.options, mandatory: true }, (err: unknown) => {
        this.#inFlight.delete(p);
        if (err === null || err === undefined) p.resolve({ routed: !p.returned });
        else this.#refused(p, ch, err);
      });
    } catch (err) {
      // The channel closed between get() and publish (amqplib throws "Channel closed").
      this.#inFlight.delete(p);
      this.#refused(p, ch, err);
    }
  }

  /** A publish that was not confirmed: fail it, or send it again if another one killed the channel. */
  #refused(p: Pending, ch: ConfirmChannel, err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    if (message === 'message nacked') {
      p.reject(new PostageError('POSTAGE_ERR_PUBLISH', `the broker refused the message to ${p.exchange || '(default)'}/${p.key} (nack)`, { exchange: p.exchange, key: p.key }));
      return;
    }
    const cause = this.#closeError.get(ch);
    if (!cause) {
      // No channel error: the connection went away with the message unconfirmed.
      p.reject(new PostageError('POSTAGE_ERR_PUBLISH', `the connection was lost before the broker confirmed the message to ${p.exchange || '(default)'}/${p.key}: it may or may not have been delivered`, { exchange: p.exchange, key: p.key }, { cause: err }));
      return;
    }
    const named = /exchange '((?:[^'\\]|\\.)*)'/.exec(cause.message)?.[1];
    if (named === p.exchange || named === undefined || p.resent) {
      p.reject(new PostageError('POSTAGE_ERR_PUBLISH', `the broker refused the message to ${p.exchange || '(default)'}/${p.key}: ${cause.message}`, { exchange: p.exchange, key: p.key }, { cause }));
      return;
    }
    p.resent = true;
    this.logger.debug('publish sent again: another message closed its channel', { exchange: p.exchange, key: p.key, cause: cause.message });
    this.#send(p);
  }

  /** A mandatory message the broker could not route: mark the oldest matching publish. */
  #onReturn(ch: ConfirmChannel, message: ConsumeMessage): void {
    const { exchange, routingKey } = message.fields;
    const id = message.properties.messageId as unknown;
    for (const p of this.#inFlight) {
      if (p.channel === ch && !p.returned && p.exchange === exchange && p.key === routingKey && p.options.messageId === id) {
        p.returned = true;
        return;
      }
    }
  }

  async close(reason: string): Promise<void> {
    await Promise.all([this.#owner.close(reason), this.#replies.close(reason)]);
  }
}
