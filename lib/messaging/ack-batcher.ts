import type { Channel, ConsumeMessage } from 'amqplib';

/**
 * Acknowledgements of one channel, sent in batches: the longest run of settled deliveries at
 * the front goes out as a single `ack(last, multiple)`, acks behind a delivery still being
 * handled go out one by one. Never acks a delivery that is not settled.
 *
 * A batch goes out at the end of the event-loop turn, or at once when half the prefetch
 * window is settled and waiting: the broker sends no more than the window, so a consumer
 * that held its acks for the next turn left it waiting for credit (at prefetch 1 every
 * message waited a turn). One ack frame per message capped consumer throughput at ~0.75x
 * raw amqplib here.
 * @internal
 */
export class AckBatcher {
  /** Delivery tag → settled? in delivery (ascending tag) order; 'sent' for rejects already sent. */
  private readonly outstanding = new Map<number, { message: ConsumeMessage; state: 'open' | 'acked' | 'sent' }>();
  /** Acks waiting for the next flush. */
  private waiting = 0;
  private scheduled = false;
  private dead = false;
  /** Acks that are sent at once, without waiting for the end of the turn. */
  private readonly batch: number;

  /** `prefetch`: the channel's window (0: unlimited, acks wait for the end of the turn). */
  constructor(
    private readonly channel: Channel,
    prefetch = 0,
  ) {
    this.batch = prefetch > 0 ? Math.max(1, Math.floor(prefetch / 2)) : Infinity;
  }

  /** Deliveries the broker still counts against the prefetch (not settled, or settled this turn). */
  get unsettled(): number {
    return this.outstanding.size;
  }

  /** Records a delivery when it arrives. */
  track(message: ConsumeMessage): void {
    this.outstanding.set(message.fields.deliveryTag, { message, state: 'open' });
  }

  ack(message: ConsumeMessage): void {
    const entry = this.outstanding.get(message.fields.deliveryTag);
    if (!entry || entry.state !== 'open' || this.dead) return;
    entry.state = 'acked';
    if (++this.waiting >= this.batch) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        if (this.scheduled) this.flush();
      });
    }
  }

  reject(message: ConsumeMessage, requeue: boolean): void {
    const entry = this.outstanding.get(message.fields.deliveryTag);
    if (!entry || entry.state !== 'open' || this.dead) return;
    this.flush();
    entry.state = 'sent';
    this.channel.reject(message, requeue);
  }

  /** Sends every pending ack now (before a cancel or a channel close). */
  flush(): void {
    this.scheduled = false;
    this.waiting = 0;
    if (this.dead) return;
    let lastAcked: ConsumeMessage | undefined;
    for (const [tag, entry] of this.outstanding) {
      if (entry.state === 'open') break;
      if (entry.state === 'acked') lastAcked = entry.message;
      this.outstanding.delete(tag);
    }
    // Every tag up to `lastAcked` is settled, so one multiple-ack is exact. It must name an
    // acked tag: naming one already rejected is an "unknown delivery tag" that kills the channel.
    if (lastAcked) this.channel.ack(lastAcked, true);
    for (const [tag, entry] of this.outstanding) {
      if (entry.state === 'open') continue;
      if (entry.state === 'acked') this.channel.ack(entry.message);
      this.outstanding.delete(tag);
    }
  }

  /** The channel is gone: its deliveries come back from the broker; nothing more is sent. */
  discard(): void {
    this.dead = true;
    this.outstanding.clear();
  }
}
