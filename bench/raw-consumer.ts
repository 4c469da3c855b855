/**
 * The raw amqplib side of the consume benches: a confirm-channel filler, and the two raw
 * consumers a library consumer is compared with:
 * - `each`: `ack(msg)` per message, what most amqplib examples do;
 * - `batched`: the best raw practice: one `ack(last, allUpTo = true)` per event-loop turn
 *   (amqplib hands every delivery of one socket read to the callback in the same turn), or
 *   as soon as half the prefetch window is unacked, so the broker never waits for credit.
 *   At prefetch 1 that is an ack per message.
 */
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import { MessageCommand } from 'postage';
import { until } from './helpers.js';

export type RawMode = 'each' | 'batched';

/** A generous bound on one drain; a stall fails the bench instead of hanging it. */
export const DRAIN_TIMEOUT_MS = 120_000;

export interface Drain {
  /** Messages per second between the first and the last message handled. */
  rate: number;
  /** CPU time of the consuming process per message, µs. */
  cpuPerMessage: number;
}

/** A Postage `hit` command (231 bytes), as every consume bench sends it. */
export function hitBody(): Buffer {
  return Buffer.from(JSON.stringify(new MessageCommand('hit', { payload: 'x'.repeat(64) }).setFingerprint({ name: 'bench', type: 'bench' }).body));
}

/** Publishes `n` copies of `content` to `queue` (non-persistent) and waits for every confirm. */
export async function fill(ch: ConfirmChannel, queue: string, n: number, content: Buffer): Promise<void> {
  for (let sent = 0; sent < n; ) {
    const window = Math.min(1000, n - sent);
    for (let i = 0; i < window; i++) ch.publish('', queue, content, { contentType: 'application/json' });
    sent += window;
    await ch.waitForConfirms();
  }
}

/** Drains `n` messages already in `queue`; the rate leaves connection and consumer setup out. */
export async function drainRaw(conn: ChannelModel, queue: string, n: number, prefetch: number, mode: RawMode): Promise<Drain> {
  const cpu0 = process.cpuUsage();
  const ch: Channel = await conn.createChannel();
  await ch.prefetch(prefetch);
  const batch = Math.max(1, Math.floor(prefetch / 2));
  let count = 0;
  let first = 0;
  let last = 0;
  let unacked: ConsumeMessage | undefined;
  let pending = 0;
  let flushQueued = false;
  const flush = (): void => {
    flushQueued = false;
    if (unacked) ch.ack(unacked, true);
    unacked = undefined;
    pending = 0;
  };
  const { consumerTag } = await ch.consume(queue, (msg) => {
    if (!msg) return;
    const now = performance.now();
    if (count === 0) first = now;
    last = now;
    count++;
    if (mode === 'each') {
      ch.ack(msg);
      return;
    }
    unacked = msg;
    if (++pending >= batch) flush();
    else if (!flushQueued) {
      flushQueued = true;
      setImmediate(flush);
    }
  });
  await until(`raw consumer (${mode}) to receive ${n} messages`, () => count >= n, DRAIN_TIMEOUT_MS);
  await ch.cancel(consumerTag);
  await ch.close();
  const used = process.cpuUsage(cpu0);
  return { rate: ((n - 1) * 1000) / (last - first), cpuPerMessage: (used.user + used.system) / n };
}
