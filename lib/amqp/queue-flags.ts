import type { Options } from 'amqplib';
import { invalidArgument, PostageError } from '../errors.js';

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

/** How a queue's flags read in an error: `durable, not auto-delete, arguments {…}`. @internal */
export function describeFlags(options: Options.AssertQueue): string {
  const parts = [options.durable === false ? 'not durable' : 'durable', options.autoDelete ? 'auto-delete' : 'not auto-delete'];
  if (options.exclusive) parts.push('exclusive');
  const args = { ...(options.arguments ?? {}) } as Record<string, unknown>;
  for (const [k, v] of [
    ['x-expires', options.expires],
    ['x-message-ttl', options.messageTtl],
    ['x-dead-letter-exchange', options.deadLetterExchange],
    ['x-dead-letter-routing-key', options.deadLetterRoutingKey],
    ['x-max-length', options.maxLength],
  ] as const) {
    if (v !== undefined) args[k] = v;
  }
  parts.push(Object.keys(args).length > 0 ? `arguments ${JSON.stringify(args)}` : 'no arguments');
  return parts.join(', ');
}

/**
 * The broker refused to declare a queue because it exists with other flags (406
 * PRECONDITION_FAILED): an error naming the queue, the flag that differs, both values, and
 * every flag declared here. Anything else is returned as it is. @internal
 */
export function explainDeclareError(err: unknown, name: string, options: Options.AssertQueue): unknown {
  if ((err as { code?: unknown })?.code !== 406) return err;
  const text = (err as Error).message;
  const m = /inequivalent arg '([^']+)' for queue '(?:[^'\\]|\\.)*' in vhost '(?:[^'\\]|\\.)*': received (.+?) but current is (.+?)"?$/.exec(text);
  const arg = m?.[1];
  const difference = m ? `the broker: '${arg}' is ${m[3]} on the queue, ${m[2]} here` : text;
  return new PostageError(
    'POSTAGE_ERR_TOPOLOGY',
    `queue '${name}' exists with other flags than the ones declared here (406 PRECONDITION_FAILED; ${difference}). Declared here: ${describeFlags(options)}`,
    { queue: name, arg, declared: m?.[2], current: m?.[3] },
    { cause: err },
  );
}
