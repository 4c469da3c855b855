/**
 * The value formats of the daemon's configuration schema (daemon/config.ts). Each one
 * validates and, for values that arrive as strings (environment, command line), coerces;
 * a string that does not parse is kept as it is, so that the error shows what was given.
 */
import convict from 'convict';
import { checkName, redactUrl } from 'postage/internal';
import { ConfigError } from './config-error.js';
import { parseListen } from './listen-address.js';

function assert(ok: boolean, message: string): asserts ok {
  if (!ok) throw new Error(message);
}

const TRUE = new Set(['true', '1', 'yes', 'on']);
const FALSE = new Set(['false', '0', 'no', 'off']);

function listOf(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** Names used in addresses: no `@ # / :` and no spaces (lib/application/addressing.ts). */
export function isName(value: unknown): boolean {
  if (typeof value !== 'string') return false;
  try {
    checkName('name', value);
    return true;
  } catch {
    return false;
  }
}

/** Node fires a timer set above 2^31 - 1 ms after 1 ms instead: the largest usable delay. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A bound that 0 turns off (`maxDeliveries`). */
function isLimit(x: unknown): boolean {
  return Number.isSafeInteger(x) && (x as number) >= 0;
}
const LIMIT_RULE = 'must be a whole number from 0 (off)';

/** AMQP's prefetch count is a 16-bit field. */
export const MAX_PREFETCH = 65535;

const formats = {
  'postaged-ms': {
    validate(x: unknown) {
      assert(Number.isInteger(x) && (x as number) >= 0 && (x as number) <= MAX_TIMER_MS, `must be a whole number of milliseconds from 0 to ${MAX_TIMER_MS} (about 24.8 days)`);
    },
    coerce: (s: string): unknown => (/^\s*\d+\s*$/.test(s) ? Number(s) : s),
  },
  'postaged-positive-ms': {
    validate(x: unknown) {
      assert(Number.isInteger(x) && (x as number) >= 1 && (x as number) <= MAX_TIMER_MS, `must be a whole number of milliseconds from 1 to ${MAX_TIMER_MS} (about 24.8 days)`);
    },
    coerce: (s: string): unknown => (/^\s*\d+\s*$/.test(s) ? Number(s) : s),
  },
  'postaged-mib': {
    validate(x: unknown) {
      assert(Number.isInteger(x) && (x as number) >= 0 && (x as number) <= 1_048_576, 'must be a whole number of MiB from 0 to 1048576');
    },
    coerce: (s: string): unknown => (/^\s*\d+\s*$/.test(s) ? Number(s) : s),
  },
  'postaged-positive-int': {
    validate(x: unknown) {
      assert(Number.isInteger(x) && (x as number) > 0, 'must be a whole number greater than 0');
    },
    coerce: (s: string): unknown => (/^\s*\d+\s*$/.test(s) ? Number(s) : s),
  },
  'postaged-limit': {
    validate(x: unknown) {
      assert(isLimit(x), LIMIT_RULE);
    },
    coerce: (s: string): unknown => (/^\s*\d+\s*$/.test(s) ? Number(s) : s),
  },
  'postaged-prefetch': {
    validate(x: unknown) {
      assert(Number.isInteger(x) && (x as number) >= 1 && (x as number) <= MAX_PREFETCH, `must be a whole number from 1 to ${MAX_PREFETCH}`);
    },
    coerce: (s: string): unknown => (/^\s*\d+\s*$/.test(s) ? Number(s) : s),
  },
  'postaged-port': {
    validate(x: unknown) {
      assert(Number.isInteger(x) && (x as number) > 0 && (x as number) <= 65535, 'must be a port number from 1 to 65535');
    },
    coerce: (s: string): unknown => (/^\s*\d+\s*$/.test(s) ? Number(s) : s),
  },
  'postaged-bool': {
    validate(x: unknown) {
      assert(typeof x === 'boolean', 'must be true or false');
    },
    coerce(s: string): unknown {
      const v = s.trim().toLowerCase();
      if (TRUE.has(v)) return true;
      if (FALSE.has(v)) return false;
      return s;
    },
  },
  'postaged-name': {
    validate(x: unknown) {
      assert(isName(x), 'must be a non-empty name without "@", "#", "/", ":" or spaces');
    },
  },
  'postaged-host': {
    validate(x: unknown) {
      assert(x === '' || isName(x), 'must be empty (the OS host name) or a name without "@", "#", "/", ":" or spaces');
    },
  },
  'postaged-path': {
    validate(x: unknown) {
      assert(typeof x === 'string' && x.trim() !== '', 'must be a non-empty path');
    },
  },
  'postaged-string': {
    validate(x: unknown) {
      assert(typeof x === 'string', 'must be a string');
    },
  },
  'postaged-listen': {
    validate(x: unknown) {
      assert(typeof x === 'string', 'must be a string: PORT, HOST:PORT or [IPv6]:PORT, or empty');
      parseListen(x);
    },
  },
  'postaged-path-list': {
    validate(x: unknown) {
      assert(Array.isArray(x) && x.every((p) => typeof p === 'string' && p.trim() !== ''), 'must be a list of file paths');
    },
    coerce: listOf,
  },
  'postaged-host-list': {
    validate(x: unknown) {
      assert(Array.isArray(x) && x.length > 0 && x.every((h) => typeof h === 'string' && h !== '' && !/\s/.test(h)), 'must be a non-empty list of host names (host or host:port)');
    },
    coerce: listOf,
  },
  'postaged-url-list': {
    validate(x: unknown) {
      assert(Array.isArray(x), 'must be a list of amqp:// or amqps:// URLs');
      for (const url of x as unknown[]) {
        // The URL itself is never echoed: it may hold a password.
        assert(typeof url === 'string' && /^amqps?:\/\/[^\s]+$/.test(url), `must be a list of amqp:// or amqps:// URLs (bad entry: ${typeof url === 'string' ? redactUrl(url) : typeof url})`);
      }
    },
    coerce: listOf,
  },
};

let registered = false;

/** Registers the formats with convict (once per process). @internal */
export function registerFormats(): void {
  if (registered) return;
  registered = true;
  convict.addFormats(formats as unknown as Parameters<typeof convict.addFormats>[0]);
}

function describe(value: unknown): string {
  const s = JSON.stringify(value) ?? String(value);
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

const APP_KEYS = new Set(['enabled', 'groups', 'settings', 'prefetch', 'concurrency', 'handlerTimeout', 'maxAttempts', 'maxDeliveries', 'topology']);
const TOPOLOGY_KEYS = new Set(['mode', 'sharedQueueExpires', 'uniqueQueueExpires', 'quorum']);

/** Checks `apps.<name>.topology`: the keys of `topology`, with their formats. */
function validateAppTopology(at: string, topology: unknown): void {
  if (topology === null || typeof topology !== 'object' || Array.isArray(topology)) throw new ConfigError(at, `${at}: must be an object (value ${describe(topology)})`);
  for (const [k, v] of Object.entries(topology)) {
    const key = `${at}.${k}`;
    const bad = (why: string): never => {
      throw new ConfigError(key, `${key}: ${why} (value ${describe(v)})`);
    };
    if (!TOPOLOGY_KEYS.has(k)) bad(`unknown key; known keys: ${[...TOPOLOGY_KEYS].join(', ')}`);
    if (k === 'mode' && v !== 'durable' && v !== 'postage') bad('must be "durable" or "postage"');
    if ((k === 'sharedQueueExpires' || k === 'uniqueQueueExpires') && !(Number.isInteger(v) && (v as number) > 0 && (v as number) <= MAX_TIMER_MS)) bad(`must be a whole number of milliseconds from 1 to ${MAX_TIMER_MS}`);
    if (k === 'quorum' && typeof v !== 'boolean') bad('must be true or false');
  }
}

/** Checks `apps.<name>` entries (convict sees `apps` as one object). @internal */
export function validateApps(apps: Record<string, unknown>): void {
  for (const [name, options] of Object.entries(apps)) {
    const at = `apps.${name}`;
    if (!isName(name)) throw new ConfigError(at, `${at}: application names may not be empty or contain "@", "#", "/", ":" or spaces`);
    if (options === null || typeof options !== 'object' || Array.isArray(options)) throw new ConfigError(at, `${at}: must be an object (value ${describe(options)})`);
    for (const [k, v] of Object.entries(options)) {
      const key = `${at}.${k}`;
      if (!APP_KEYS.has(k)) throw new ConfigError(key, `${key}: unknown key (value ${describe(v)}); known keys: ${[...APP_KEYS].join(', ')}`);
      const bad = (why: string): never => {
        throw new ConfigError(key, `${key}: ${why} (value ${describe(v)})`);
      };
      if (k === 'enabled' && typeof v !== 'boolean') bad('must be true or false');
      if (k === 'groups' && !(Array.isArray(v) && v.every(isName))) bad('must be a list of group names without "@", "#", "/", ":" or spaces');
      if (k === 'settings' && (v === null || typeof v !== 'object' || Array.isArray(v))) bad('must be an object');
      if (k === 'prefetch' && !(Number.isInteger(v) && (v as number) >= 1 && (v as number) <= MAX_PREFETCH)) bad(`must be a whole number from 1 to ${MAX_PREFETCH}`);
      if ((k === 'concurrency' || k === 'maxAttempts') && !(Number.isInteger(v) && (v as number) > 0)) bad('must be a whole number greater than 0');
      if (k === 'maxDeliveries' && !isLimit(v)) bad(LIMIT_RULE);
      if (k === 'handlerTimeout' && !(Number.isInteger(v) && (v as number) >= 0 && (v as number) <= MAX_TIMER_MS)) bad(`must be a whole number of milliseconds from 0 to ${MAX_TIMER_MS}`);
      if (k === 'topology') validateAppTopology(key, v);
    }
  }
}
