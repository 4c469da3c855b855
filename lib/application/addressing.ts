/**
 * Every queue and routing-key name of a GenericApplication, built in this one file
 * (docs/addressing.md is the table of what they mean).
 */
import type { QueueFlags, QueueSpec } from '../amqp/queue-flags.js';
import { invalidArgument } from '../errors.js';

/**
 * `durable` (default): nothing is lost across a restart: durable queues that expire when
 * unused, with a dead-letter exchange. `postage`: exactly Python Postage 1.2.1's flags,
 * for fleets that mix Python and TypeScript applications on the same queues.
 */
export type TopologyMode = 'durable' | 'postage';

/** Topology settings of an application. */
export interface TopologyOptions {
  /** Default: `durable`. */
  mode?: TopologyMode;
  /** Unused shared queues (`N`, `N@H`, `N#G`) are deleted after this many ms. Default: 7 days. */
  sharedQueueExpires?: number;
  /**
   * An instance's own queue is deleted this many ms after its process is gone; it outlives
   * a re-exec (same PID). Default: 60000.
   */
  uniqueQueueExpires?: number;
  /**
   * Declare the application's queues (shared, group and its own) as quorum queues, replicated
   * on a cluster: its own queue then survives the loss of the node it lives on. Default: false.
   */
  quorum?: boolean;
}

/** The exchange failed messages are published to, keyed by application name. */
export const DEAD_LETTER_EXCHANGE = 'postage.dead-letter';

/** Name of an application's dead-letter queue. */
export function deadLetterQueue(name: string): string {
  return `${DEAD_LETTER_EXCHANGE}.${name}`;
}

/**
 * Fan-out key every `postaged` daemon's own application binds, so that `postage ps` finds
 * them all whatever their names. It cannot clash with an application key: names may not be empty.
 */
export const DAEMON_DISCOVERY_KEY = '#daemons';

/** Who an application is, for addressing. */
export interface Identity {
  name: string;
  host: string;
  pid: string | number;
}

/** Queue names and routing keys of one application instance. */
export interface Addresses {
  /** Shared by every N: `N`, bound with `N/rr`. */
  sid: string;
  /** Shared by every N on host H: `N@H`, bound with `N@H/rr`. */
  hid: string;
  /** This instance's own queue: `N:P@H`. */
  uid: string;
  /** Keys bound to the unique queue (fan-out): `N`, `@H`, `N@H`, `P@H`, `N:P@H`. */
  fanoutKeys: string[];
  /** The key that reaches exactly this instance: `N:P@H`. */
  instanceKey: string;
  /** The key that reaches every application of the process: `P@H`. */
  processKey: string;
}

const FORBIDDEN = /[@#/:\s]/;

/** Checks that a name can be used in addresses (no `@ # / :` or spaces). */
export function checkName(kind: string, value: string): string {
  if (typeof value !== 'string' || value === '' || FORBIDDEN.test(value)) {
    throw invalidArgument(kind, value, 'must be a non-empty name without "@", "#", "/", ":" or spaces');
  }
  return value;
}

export function addressesOf({ name, host, pid }: Identity): Addresses {
  const uid = `${name}:${pid}@${host}`;
  return {
    sid: name,
    hid: `${name}@${host}`,
    uid,
    fanoutKeys: [name, `@${host}`, `${name}@${host}`, `${pid}@${host}`, uid],
    instanceKey: uid,
    processKey: `${pid}@${host}`,
  };
}

/** Group keys: `N#G` fans out to members' unique queues; `N#G/rr` balances over queue `N#G`. */
export function groupKey(name: string, group: string): string {
  return `${name}#${group}`;
}

export function groupRoundRobinKey(name: string, group: string): string {
  return `${groupKey(name, group)}/rr`;
}

const DAY = 24 * 3600 * 1000;

function durableFlags(expires: number, name: string, quorum: boolean): QueueFlags {
  const args: Record<string, unknown> = {
    'x-expires': expires,
    'x-dead-letter-exchange': DEAD_LETTER_EXCHANGE,
    'x-dead-letter-routing-key': name,
  };
  if (quorum) args['x-queue-type'] = 'quorum';
  return { durable: true, autoDelete: false, exclusive: false, arguments: args };
}

/** The flags of each kind of queue in a topology mode. */
export function queueFlags(kind: 'shared' | 'unique' | 'group' | 'dead-letter', appName: string, options: TopologyOptions = {}): QueueFlags | undefined {
  const mode = options.mode ?? 'durable';
  if (kind === 'dead-letter') {
    // Durable in both modes (Python Postage had none); replicated like the rest with quorum.
    return mode === 'durable' && options.quorum ? { durable: true, arguments: { 'x-queue-type': 'quorum' } } : { durable: true };
  }
  if (mode === 'postage') {
    // Python: sid, hid and uid were {'auto_delete': True}; the group queue had no flags.
    return kind === 'group' ? undefined : { auto_delete: true };
  }
  if (mode !== 'durable') throw invalidArgument('topology.mode', mode, 'must be "durable" or "postage"');
  if (kind === 'unique') return durableFlags(options.uniqueQueueExpires ?? 60_000, appName, options.quorum ?? false);
  return durableFlags(options.sharedQueueExpires ?? 7 * DAY, appName, options.quorum ?? false);
}

function spec(name: string, flags: QueueFlags | undefined): QueueSpec {
  return flags ? { name, flags } : name;
}

/** The (queue, key) bindings an application declares at start. */
export function applicationBindings(id: Identity, groups: readonly string[], options: TopologyOptions = {}): Array<[QueueSpec, string]> {
  const a = addressesOf(id);
  const unique = spec(a.uid, queueFlags('unique', id.name, options));
  const bindings: Array<[QueueSpec, string]> = [
    [spec(a.sid, queueFlags('shared', id.name, options)), `${a.sid}/rr`],
    [spec(a.hid, queueFlags('shared', id.name, options)), `${a.hid}/rr`],
    ...a.fanoutKeys.map((key): [QueueSpec, string] => [unique, key]),
  ];
  for (const g of groups) bindings.push(...groupBindings(id, g, options));
  return bindings;
}

/** Bindings for one group given at start: `N#G` to the unique queue, `N#G/rr` to queue `N#G`. */
export function groupBindings(id: Identity, group: string, options: TopologyOptions = {}): Array<[QueueSpec, string]> {
  const a = addressesOf(id);
  return [
    [spec(a.uid, queueFlags('unique', id.name, options)), groupKey(id.name, group)],
    [spec(groupKey(id.name, group), queueFlags('group', id.name, options)), groupRoundRobinKey(id.name, group)],
  ];
}

/** The application's dead-letter queue `postage.dead-letter.N`. */
export function deadLetterQueueSpec(name: string, options: TopologyOptions = {}): { name: string; flags: QueueFlags } {
  return { name: deadLetterQueue(name), flags: queueFlags('dead-letter', name, options)! };
}

/** The unique queue's spec (for `join_group` at run time). */
export function uniqueQueueSpec(id: Identity, options: TopologyOptions = {}): QueueSpec {
  return spec(addressesOf(id).uid, queueFlags('unique', id.name, options));
}

/** The forms of a routing key (docs/addressing.md). */
export type KeyForm = 'N' | 'N/rr' | '@H' | 'N@H' | 'N@H/rr' | 'P@H' | 'N:P@H' | 'N#G' | 'N#G/rr' | 'daemons';

/** A routing key read against the addressing grammar. */
export interface ParsedKey {
  form: KeyForm;
  /**
   * `fanout`: every application the key reaches gets a copy (`N`, `@H`, `N@H`, `P@H`, `N#G`,
   * `#daemons`); `single`: one consumer gets it (round robin, or exactly one instance).
   */
  reach: 'fanout' | 'single';
  name?: string;
  host?: string;
  pid?: string;
  group?: string;
}

const NAME = '[^@#/:\\s]+';
const KEY_FORMS: ReadonlyArray<[RegExp, KeyForm]> = [
  [new RegExp(`^(?<name>${NAME})/rr$`), 'N/rr'],
  [new RegExp(`^(?<name>${NAME})@(?<host>${NAME})/rr$`), 'N@H/rr'],
  [new RegExp(`^(?<name>${NAME})#(?<group>${NAME})/rr$`), 'N#G/rr'],
  [new RegExp(`^(?<name>${NAME}):(?<pid>\\d+)@(?<host>${NAME})$`), 'N:P@H'],
  [new RegExp(`^(?<name>${NAME})$`), 'N'],
  [new RegExp(`^@(?<host>${NAME})$`), '@H'],
  [new RegExp(`^(?<pid>\\d+)@(?<host>${NAME})$`), 'P@H'],
  [new RegExp(`^(?<name>${NAME})@(?<host>${NAME})$`), 'N@H'],
  [new RegExp(`^(?<name>${NAME})#(?<group>${NAME})$`), 'N#G'],
];

const SINGLE: ReadonlySet<KeyForm> = new Set(['N/rr', 'N@H/rr', 'N#G/rr', 'N:P@H']);

/**
 * Reads a routing key: its form, how many it reaches, and its parts. Returns `undefined` for
 * a string that is none of the forms (a numeric name is read as a process id before `@`).
 */
export function parseKey(key: string): ParsedKey | undefined {
  if (key === DAEMON_DISCOVERY_KEY) return { form: 'daemons', reach: 'fanout' };
  if (Buffer.byteLength(key) > 255) return undefined; // AMQP's limit for a routing key
  for (const [re, form] of KEY_FORMS) {
    const m = re.exec(key);
    if (!m) continue;
    const parsed: ParsedKey = { form, reach: SINGLE.has(form) ? 'single' : 'fanout' };
    for (const part of ['name', 'host', 'pid', 'group'] as const) {
      const v = m.groups?.[part];
      if (v !== undefined) parsed[part] = v;
    }
    return parsed;
  }
  return undefined;
}

/**
 * Whether a key reaches several applications of one process: only `P@H` (the whole process)
 * and `@H` (the whole host) do; every other key reaches at most one application per process.
 * A daemon's own application binds both, so a command on them is the daemon's to act on.
 */
export function reachesWholeProcess(key: string): boolean {
  const form = parseKey(key)?.form;
  return form === 'P@H' || form === '@H';
}

/** A queue of the addressing model read from its name, with the flags its topology mode gives it. */
export interface QueueRole {
  kind: 'shared' | 'unique' | 'group' | 'dead-letter';
  /** The application it belongs to. */
  app: string;
  /** Its flags in that mode (`undefined`: declared without flags). */
  flags: QueueFlags | undefined;
}

/**
 * What a queue is, from its name, and the flags the topology `options` give it: `N`, `N@H`
 * (shared), `N#G` (group), `N:P@H` (an instance's own), `postage.dead-letter.N`, and in the
 * `postage` mode `P@H` (Python Postage's own queue). `undefined` for a name that is none.
 */
export function queueRole(name: string, options: TopologyOptions = {}): QueueRole | undefined {
  if (name.startsWith(`${DEAD_LETTER_EXCHANGE}.`)) {
    const app = name.slice(DEAD_LETTER_EXCHANGE.length + 1);
    return app ? { kind: 'dead-letter', app, flags: queueFlags('dead-letter', app, options) } : undefined;
  }
  const parsed = parseKey(name);
  switch (parsed?.form) {
    case 'N':
    case 'N@H':
      return { kind: 'shared', app: parsed.name as string, flags: queueFlags('shared', parsed.name as string, options) };
    case 'N#G':
      return { kind: 'group', app: parsed.name as string, flags: queueFlags('group', parsed.name as string, options) };
    case 'N:P@H':
      return { kind: 'unique', app: parsed.name as string, flags: queueFlags('unique', parsed.name as string, options) };
    case 'P@H':
      // Python Postage named an instance's own queue P@H; here P@H is only a key.
      return (options.mode ?? 'durable') === 'postage' ? { kind: 'unique', app: name, flags: { auto_delete: true } } : undefined;
    default:
      return undefined;
  }
}
