import type { Options } from 'amqplib';
import { invalidArgument } from '../errors.js';

/**
 * Queue flags as Python wrote them (`auto_delete`, `durable`, `exclusive`, `arguments`)
 * or as amqplib does (`autoDelete`, …). Both spellings are accepted.
 */
export interface QueueFlags {
  durable?: boolean;
  exclusive?: boolean;
  autoDelete?: boolean;
  auto_delete?: boolean;
  passive?: boolean;
  arguments?: Record<string, unknown>;
  /** amqplib shorthands for common arguments. */
  messageTtl?: number;
  expires?: number;
  deadLetterExchange?: string;
  deadLetterRoutingKey?: string;
  maxLength?: number;
}

/** A queue as it appears in `eqk`: a name, or `{name, flags}`. */
export type QueueSpec = string | { name: string; flags?: QueueFlags };

/** Name and normalised flags of a queue spec. @internal */
export function normalizeQueue(spec: QueueSpec): { name: string; passive: boolean; options: Options.AssertQueue } {
  if (typeof spec === 'string') return { name: spec, passive: false, options: { durable: false } };
  if (spec === null || typeof spec !== 'object' || typeof spec.name !== 'string') {
    throw invalidArgument('queue', spec, 'must be a name or {name, flags}');
  }
  const f = spec.flags ?? {};
  const options: Options.AssertQueue = {
    // Python/pika declared queues non-durable unless told otherwise.
    durable: f.durable ?? false,
    exclusive: f.exclusive ?? false,
    autoDelete: f.autoDelete ?? f.auto_delete ?? false,
  };
  if (f.arguments) options.arguments = { ...f.arguments };
  if (f.messageTtl !== undefined) options.messageTtl = f.messageTtl;
  if (f.expires !== undefined) options.expires = f.expires;
  if (f.deadLetterExchange !== undefined) options.deadLetterExchange = f.deadLetterExchange;
  if (f.deadLetterRoutingKey !== undefined) options.deadLetterRoutingKey = f.deadLetterRoutingKey;
  if (f.maxLength !== undefined) options.maxLength = f.maxLength;
  return { name: spec.name, passive: f.passive ?? false, options };
}
