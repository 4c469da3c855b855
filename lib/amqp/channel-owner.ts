/**
 * One owner of one AMQP channel: the only place that opens, sets up, loses and re-opens a
 * channel. Publishers, reply lanes and consumers all hold one instead of each keeping
 * "the promise of a channel" by hand (four copies had drifted; one kept a rejected set-up
 * promise forever, so a consumer stopped consuming while it reported `running`).
 *
 *   idle ──get()──▶ opening ──set-up done──▶ open ──channel closed──▶ lost
 *     ▲                │                                               │
 *     │                └── failed (create or set-up rejected) ─────────┤
 *     │                                                                ▼
 *     └──────────── (lazy: next get() opens) ◀─────── keepOpen? ──▶ backoff ──timer──▶ opening
 *   close() from any state ──▶ closed (final)
 *
 * Every channel opened gets a generation number; events and set-up carry it, so a late
 * event from a channel already replaced is recognised and ignored.
 */
import { EventEmitter } from 'node:events';
import type { Channel, ConfirmChannel } from 'amqplib';
import { ClosedError } from '../errors.js';
import type { Logger } from '../logger.js';

/** Where the owner is in its life. */
export type ChannelState = 'idle' | 'opening' | 'open' | 'backoff' | 'closed';

/** What the owner needs from a connection. @internal */
export interface ChannelSource {
  createChannel(): Promise<Channel>;
  createConfirmChannel(): Promise<ConfirmChannel>;
  readonly closed: boolean;
  readonly closeReason: string | undefined;
}

/** Options of a {@link ChannelOwner}. @internal */
export interface ChannelOwnerOptions<C extends Channel> {
  /** What the channel is for, in logs and errors (`consumer of N`, `publisher`, …). */
  name: string;
  confirm?: C extends ConfirmChannel ? true : false;
  /** Runs on every new channel before anyone gets it: prefetch, declarations, consume. */
  setup?: (channel: C, generation: number) => Promise<void>;
  /**
   * Re-open by itself, with backoff, after the channel is lost or fails to open (consumers
   * must; publishers open lazily on their next use instead). Default: false.
   */
  keepOpen?: boolean;
  /** Backoff after a failure, in ms: doubles from `initial` up to `max`, ±20 % jitter. Defaults: 100, 5000. */
  backoff?: { initial?: number; max?: number };
  logger: Logger;
}

/** @internal */
export interface ChannelOwnerEvents<C> {
  /** A channel is open and set up. */
  open: [channel: C, generation: number];
  /** The channel of `generation` is gone (broker error, connection loss, queue deleted…). */
  lost: [generation: number, reason: string];
  /** Opening a channel (or its set-up) failed. */
  failed: [reason: string];
}

/**
 * Owns one channel of `source`. `get()` returns the open channel, or opens it (concurrent
 * callers share the opening); a failure rejects the callers of that attempt only.
 * @internal
 */
export class ChannelOwner<C extends Channel = Channel> extends EventEmitter<ChannelOwnerEvents<C>> {
  #state: ChannelState = 'idle';
  #channel: C | undefined;
  #opening: Promise<C> | undefined;
  #generation = 0;
  #attempt = 0;
  #timer: NodeJS.Timeout | undefined;
  #closeReason: string | undefined;
  #closing: Promise<void> | undefined;
  /** Channels whose 'close' came before they became current (closed during set-up). */
  readonly #closedEarly = new WeakSet<C>();

  constructor(
    private readonly source: ChannelSource,
    private readonly options: ChannelOwnerOptions<C>,
  ) {
    super();
  }

  get state(): ChannelState {
    return this.#state;
  }

  /** Generation of the current (or last) channel: 1 for the first one opened. */
  get generation(): number {
    return this.#generation;
  }

  /** The open channel, if there is one now. */
  get current(): C | undefined {
    return this.#state === 'open' ? this.#channel : undefined;
  }

  /** The only transition function: every state change goes through here. */
  #to(next: ChannelState): void {
    this.#state = next;
  }

  /** The open channel, opening it first if needed. */
  get(): Promise<C> {
    if (this.#state === 'closed') return Promise.reject(new ClosedError(this.options.name, this.#closeReason ?? 'closed'));
    if (this.source.closed) return Promise.reject(new ClosedError('connection', this.source.closeReason ?? 'closed'));
    if (this.#state === 'open' && this.#channel) return Promise.resolve(this.#channel);
    if (this.#opening) return this.#opening;
    // idle or backoff: open now (a caller waiting is worth more than the backoff timer).
    return this.#open();
  }

  #open(): Promise<C> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#to('opening');
    const generation = ++this.#generation;
    const opening = (async () => {
      const ch = (this.options.confirm ? await this.source.createConfirmChannel() : await this.source.createChannel()) as C;
      // Without a listener an 'error' event would throw; the 'close' that follows says what happened.
      ch.on('error', (err: Error) => this.options.logger.debug('channel error', { channel: this.options.name, reason: err.message }));
      ch.on('close', () => {
        this.#closedEarly.add(ch);
        this.#onClose(ch, generation);
      });
      try {
        await this.options.setup?.(ch, generation);
      } catch (err) {
        await ch.close().catch(() => undefined);
        throw err;
      }
      return ch;
    })();
    this.#opening = opening;
    opening.then(
      (ch) => {
        if (this.#opening !== opening) return;
        this.#opening = undefined;
        if (this.#state === 'closed') {
          ch.close().catch(() => undefined);
          return;
        }
        if (this.#closedEarly.has(ch)) {
          this.#afterLoss();
          return;
        }
        this.#channel = ch;
        this.#attempt = 0;
        this.#to('open');
        this.emit('open', ch, generation);
      },
      (err: unknown) => {
        if (this.#opening !== opening) return;
        this.#opening = undefined;
        if (this.#state === 'closed') return;
        const reason = (err as Error)?.message ?? String(err);
        this.options.logger.warn('could not open a channel', { channel: this.options.name, reason, attempt: this.#attempt + 1 });
        this.emit('failed', reason);
        this.#afterLoss();
      },
    );
    return opening;
  }

  #onClose(ch: C, generation: number): void {
    if (this.#channel !== ch) return; // a channel that never became current, or one already replaced
    this.#channel = undefined;
    if (this.#state === 'closed') return;
    const reason = this.source.closed ? 'connection closed' : 'channel closed by the broker or the connection';
    this.emit('lost', generation, reason);
    this.#afterLoss();
  }

  /** After a failure or a loss: re-open with backoff (keepOpen), or wait for the next get(). */
  #afterLoss(): void {
    if (this.#state === 'closed') return;
    if (!this.options.keepOpen || this.source.closed) {
      this.#to('idle');
      return;
    }
    this.#to('backoff');
    const initial = this.options.backoff?.initial ?? 100;
    const max = this.options.backoff?.max ?? 5000;
    const base = Math.min(max, initial * 2 ** this.#attempt++);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#state === 'backoff') this.#open().catch(() => undefined);
    }, delay);
  }

  /**
   * Opens again now, whatever the state (but closed): for a caller that knows the old
   * channel is useless, e.g. after a reconnect. The open channel, if any, is closed first.
   */
  reopen(reason = 'reopened'): void {
    if (this.#state === 'closed' || this.#state === 'opening') return;
    const old = this.#channel;
    this.#channel = undefined;
    if (old) {
      old.close().catch(() => undefined);
      this.emit('lost', this.#generation, reason);
    }
    this.#open().catch(() => undefined);
  }

  /** Closes the channel for good (idempotent; concurrent callers share one promise). */
  close(reason = 'closed'): Promise<void> {
    this.#closing ??= (async () => {
      this.#closeReason = reason;
      this.#to('closed');
      clearTimeout(this.#timer);
      this.#timer = undefined;
      const ch = this.#channel ?? (await this.#opening?.catch(() => undefined));
      this.#channel = undefined;
      if (ch) await ch.close().catch(() => undefined);
    })();
    return this.#closing;
  }
}
