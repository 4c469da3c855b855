/**
 * The channels RPC replies come back on. RabbitMQ's direct reply-to is per channel: a reply
 * goes to the channel that published the request. So each call in flight gets a channel of
 * its own (a lane), and any reply arriving there belongs to that call — with or without a
 * correlation id. Python Postage's responders send none, and matching such a reply by "the
 * only call pending on the connection" broke as soon as two calls, or a timed-out one,
 * shared the connection.
 *
 * A lane is used again by a later call only when no late reply can still reach it without a
 * correlation id (see {@link ReplyLanes.release}); otherwise it is closed, and replies sent
 * to it are dropped by the broker. At most `max` lanes exist; further calls wait for one.
 * @internal
 */
import type { Channel, ConsumeMessage, Options } from 'amqplib';
import { ClosedError } from '../errors.js';
import type { Logger } from '../logger.js';
import { ChannelOwner, type ChannelSource } from './channel-owner.js';

/** RabbitMQ's direct reply-to pseudo queue: replies skip a real queue entirely. */
export const DIRECT_REPLY_TO = 'amq.rabbitmq.reply-to';

/** The call a lane serves: its replies, and the end of the connection. @internal */
export interface LaneListener {
  reply(message: ConsumeMessage): void;
  /** The connection was closed: nothing can answer any more. */
  closed(reason: string): void;
}

/** One channel consuming direct reply-to, serving one call at a time. @internal */
export class ReplyLane {
  readonly owner: ChannelOwner<Channel>;
  #listener: LaneListener | undefined;

  constructor(source: ChannelSource, logger: Logger, readonly id: number) {
    this.owner = new ChannelOwner<Channel>(source, {
      name: `rpc reply channel ${id}`,
      logger,
      setup: async (ch) => {
        await ch.consume(DIRECT_REPLY_TO, (msg) => msg && this.#listener?.reply(msg), { noAck: true });
      },
    });
  }

  /** Who gets the replies from now on (`undefined`: nobody; they are dropped). */
  listen(listener: LaneListener | undefined): void {
    this.#listener = listener;
  }

  /**
   * Publishes a request whose replies come back to this lane. Resolves once handed to the
   * channel; `stillWanted` is asked after the channel is ready, so a try that waited out an
   * outage is not sent for a call that has already ended.
   */
  async publish(exchange: string, key: string, content: Buffer, options: Options.Publish, stillWanted: () => boolean = () => true): Promise<boolean> {
    // Once the lane is open the request goes out in the caller's turn.
    const ch = this.owner.current ?? (await this.owner.get());
    if (!stillWanted()) return false;
    // Direct reply-to requires publishing on the channel that consumes the replies.
    ch.publish(exchange, key, content, { ...options, replyTo: DIRECT_REPLY_TO });
    return true;
  }

  close(reason: string): Promise<void> {
    const listener = this.#listener;
    this.#listener = undefined;
    listener?.closed(reason);
    return this.owner.close(reason);
  }
}

/** The pool of reply lanes of one connection. @internal */
export class ReplyLanes {
  readonly #idle: ReplyLane[] = [];
  readonly #busy = new Set<ReplyLane>();
  readonly #waiters: Array<{ resolve: (lane: ReplyLane) => void; reject: (err: Error) => void }> = [];
  #next = 1;
  #closed: string | undefined;

  constructor(
    private readonly source: ChannelSource,
    private readonly options: { max: number; logger: Logger },
  ) {}

  /** Lanes open or opening, for diagnostics. */
  get size(): number {
    return this.#idle.length + this.#busy.size;
  }

  /** An idle lane, a new one, or (at `max`) the next one released. */
  acquire(): Promise<ReplyLane> {
    if (this.#closed !== undefined) return Promise.reject(new ClosedError('connection', this.#closed));
    const lane = this.#idle.pop() ?? (this.size < this.options.max ? new ReplyLane(this.source, this.options.logger, this.#next++) : undefined);
    if (lane) {
      this.#busy.add(lane);
      return Promise.resolve(lane);
    }
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /**
   * Gives a lane back. `reusable` only when nothing can still arrive on it without a
   * correlation id (the call got its one reply to its one try, or every reply carried the
   * call's correlation id, which a later call would not match); otherwise the lane is
   * closed, so that a late reply can never answer a different call.
   */
  release(lane: ReplyLane, reusable: boolean): void {
    lane.listen(undefined);
    this.#busy.delete(lane);
    if (!reusable || this.#closed !== undefined) {
      void lane.close('retired');
      lane.owner.removeAllListeners();
      if (this.#waiters.length > 0 && this.#closed === undefined) {
        const fresh = new ReplyLane(this.source, this.options.logger, this.#next++);
        this.#busy.add(fresh);
        this.#waiters.shift()?.resolve(fresh);
      }
      return;
    }
    const waiter = this.#waiters.shift();
    if (waiter) {
      this.#busy.add(lane);
      waiter.resolve(lane);
    } else this.#idle.push(lane);
  }

  async close(reason: string): Promise<void> {
    this.#closed ??= reason;
    for (const w of this.#waiters.splice(0)) w.reject(new ClosedError('connection', reason));
    const all = [...this.#idle.splice(0), ...this.#busy];
    this.#busy.clear();
    await Promise.all(all.map((l) => l.close(reason)));
  }
}
