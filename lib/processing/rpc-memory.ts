/**
 * What an RPC responder remembers of the requests it answered, by `message_id`: a caller
 * that timed out sends the same request again (same `message_id`, up to 4 times), and a
 * handler that is not idempotent must not run again for it. A request seen before is
 * answered with the first answer (or, still running, when that one comes); only requests
 * with a `message_id` are remembered (Python Postage callers send none).
 * @internal
 */
import type { Delivery } from '../messaging/generic-consumer.js';
import type { Settlement } from './settlement.js';

interface Entry {
  at: number;
  /** The encoded answer, once there is one. */
  answer: Buffer | undefined;
  /** Copies of the request that came while the first was being handled. */
  waiting: Array<{ replyTo: string; correlationId: string | undefined }>;
}

/** Most requests remembered at once: the oldest are forgotten first. */
const MAX_ENTRIES = 10_000;

/** @internal */
export class RpcMemory {
  readonly #entries = new Map<string, Entry>();

  constructor(private readonly windowMs: number) {}

  #sweep(now: number): void {
    for (const [id, entry] of this.#entries) {
      if (now - entry.at < this.windowMs && this.#entries.size <= MAX_ENTRIES) break;
      this.#entries.delete(id);
    }
  }

  /** True when this request was seen before: it is (or will be) answered from memory. */
  answerAgain(delivery: Delivery, settlement: Settlement): boolean {
    const props = delivery.message.properties;
    const id = props.messageId as string | undefined;
    if (!id) return false;
    this.#sweep(Date.now());
    const entry = this.#entries.get(id);
    if (!entry) return false;
    const replyTo = props.replyTo as string | undefined;
    if (!replyTo) return true;
    const correlationId = props.correlationId as string | undefined;
    if (entry.answer) void settlement.replyEncoded(replyTo, correlationId, entry.answer);
    else entry.waiting.push({ replyTo, correlationId });
    return true;
  }

  /** The reply function of a first request: answers it and remembers the answer. */
  replier(delivery: Delivery, settlement: Settlement): (result: unknown) => Promise<void> {
    const props = delivery.message.properties;
    const id = props.messageId as string | undefined;
    if (!id) return (result) => settlement.reply(delivery, result);
    const entry: Entry = { at: Date.now(), answer: undefined, waiting: [] };
    this.#entries.set(id, entry);
    return async (result) => {
      const answer = settlement.encodeReply(result);
      entry.answer = answer;
      const replyTo = props.replyTo as string | undefined;
      // The copies that came meanwhile (rare): answered with it.
      const again = entry.waiting.length === 0 ? undefined : Promise.all(entry.waiting.splice(0).map((w) => settlement.replyEncoded(w.replyTo, w.correlationId, answer)));
      if (replyTo) await settlement.replyEncoded(replyTo, props.correlationId as string | undefined, answer);
      else await settlement.reply(delivery, result); // logs the missing reply_to
      await again;
    };
  }
}
