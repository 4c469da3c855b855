/**
 * Hostile input for the fault suite (#23–#27): raw amqplib publishes on a channel of the
 * test's own connection, so that a body can be anything (bytes that are not JSON, JSON the
 * library's encoder could not write, `__proto__` keys as text), with the ledger of
 * test/helpers/faults.ts kept as the library's Sender keeps it: a message counts as sent when
 * the broker confirmed it and did not return it (every publish is `mandatory`).
 */
import { randomUUID } from 'node:crypto';
import type { Channel, ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import { GenericApplicationExchange, type Connection } from 'postage';
import type { Ledger } from './faults.js';

const GAE = GenericApplicationExchange.name;

/** A Postage command body as raw JSON text, `parameters` given as text (kept as written). */
export function bodyText(parametersText: string, options: { name?: string; category?: 'message' | 'rpc' } = {}): string {
  return `{"type":"command","name":"${options.name ?? 'probe'}","category":"${options.category ?? 'message'}","version":"2","fingerprint":{"name":"fault-test","type":"test"},"content":{"parameters":${parametersText}},"_reserved":{}}`;
}

/** Probe parameters `{id, seq}` as JSON text, with `extra` text (`,"k":v…`) appended. */
export function probeParams(id: string, seq: number, extra = ''): string {
  return `{"id":"${id}","seq":${seq}${extra}}`;
}

/** Publishes raw bodies to the generic application exchange on a confirm channel; keeps a ledger. */
export class RawPublisher {
  readonly #returned = new Set<string>();

  private constructor(
    readonly ch: ConfirmChannel,
    readonly ledger: Ledger,
  ) {
    ch.on('return', (msg: ConsumeMessage) => {
      if (typeof msg.properties.messageId === 'string') this.#returned.add(msg.properties.messageId);
    });
    ch.on('error', () => undefined);
  }

  /** A confirm channel of `connection`, closed at teardown by the caller (`close()`). */
  static async open(connection: Connection, ledger: Ledger): Promise<RawPublisher> {
    return new RawPublisher(await connection.createConfirmChannel(), ledger);
  }

  /**
   * Publishes `content` (mandatory, persistent) with message id `id` (a fresh one by default)
   * and records the outcome in the ledger; resolves with the id once the broker answered.
   */
  publish(key: string, content: Buffer | string, options: Options.Publish & { id?: string; seq?: number } = {}): Promise<string> {
    const { id = randomUUID(), seq = this.ledger.nextSeq(), ...props } = options;
    const at = Date.now();
    this.ledger.pending.add(id);
    return new Promise((resolve) => {
      this.ch.publish(GAE, key, typeof content === 'string' ? Buffer.from(content) : content, { mandatory: true, persistent: true, messageId: id, ...props }, (err: unknown) => {
        this.ledger.pending.delete(id);
        if (err) this.ledger.refused.set(id, String((err as Error)?.message ?? err));
        else if (this.#returned.has(id)) this.ledger.returned.add(id);
        else this.ledger.sent.set(id, { seq, key, at, confirmedAt: Date.now() });
        resolve(id);
      });
    });
  }

  async close(): Promise<void> {
    await this.ch.close().catch(() => undefined);
  }
}

/** Raw RPC calls (direct reply-to) with bodies given as bytes; replies decoded as JSON. */
export class RawRpc {
  readonly #pending = new Map<string, (msg: ConsumeMessage) => void>();

  private constructor(readonly ch: Channel) {}

  static async open(connection: Connection): Promise<RawRpc> {
    const ch = await connection.createChannel();
    ch.on('error', () => undefined);
    const rpc = new RawRpc(ch);
    await ch.consume(
      'amq.rabbitmq.reply-to',
      (msg) => {
        const id = msg?.properties.correlationId as string | undefined;
        if (msg && id) rpc.#pending.get(id)?.(msg);
      },
      { noAck: true },
    );
    return rpc;
  }

  /** Sends `content` to `key` with a reply-to; resolves with the decoded reply (or rejects after `timeoutMs`). */
  call(key: string, content: Buffer | string, options: { id?: string; timeoutMs?: number; contentType?: string } = {}): Promise<{ type: string; value: unknown; message: string; body: Record<string, unknown> }> {
    const id = options.id ?? randomUUID();
    const timeoutMs = options.timeoutMs ?? 15_000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`no reply to ${id} on ${key} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, (msg) => {
        clearTimeout(timer);
        this.#pending.delete(id);
        const body = JSON.parse(msg.content.toString('utf8')) as { content: { type: string; value: unknown; message: string } };
        resolve({ ...body.content, body: body as unknown as Record<string, unknown> });
      });
      this.ch.publish(GAE, key, typeof content === 'string' ? Buffer.from(content) : content, {
        replyTo: 'amq.rabbitmq.reply-to',
        correlationId: id,
        messageId: id,
        contentType: options.contentType ?? 'application/json',
      });
    });
  }

  async close(): Promise<void> {
    await this.ch.close().catch(() => undefined);
  }
}

/** Runs `jobs` with at most `window` of them pending at once. */
export async function inWindow<T>(items: readonly T[], window: number, job: (item: T, i: number) => Promise<unknown>): Promise<void> {
  const inFlight = new Set<Promise<unknown>>();
  for (let i = 0; i < items.length; i++) {
    while (inFlight.size >= window) await Promise.race(inFlight);
    const p: Promise<unknown> = job(items[i]!, i).finally(() => inFlight.delete(p));
    inFlight.add(p);
  }
  await Promise.all(inFlight);
}

/** Lines of `lines` from `from` on that match, counted without building a list (for floods of log lines). */
export function countFrom<L>(lines: readonly L[], from: number, match: (l: L) => boolean): number {
  let n = 0;
  for (let i = from; i < lines.length; i++) if (match(lines[i]!)) n++;
  return n;
}
