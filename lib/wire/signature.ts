/**
 * Signed control commands. Anyone who can publish on a vhost can send `quit` or `restart` to
 * every daemon; with a shared secret configured, the control commands (`quit`, `restart`,
 * `join_group`, `leave_group`) carry an HMAC-SHA256 in `_reserved.signature` (where Python
 * Postage peers ignore it), and receivers refuse those that are unsigned, badly signed, too
 * old, or seen before.
 *
 * The MAC covers a version tag, the time, a nonce, the routing key the command was sent with
 * (a command signed for `N` is refused when replayed to `@H`), and the body's type, name,
 * category and content (content in canonical JSON: keys sorted, so both sides serialise it
 * alike). Several secrets may be configured, for rotation: the first signs, any verifies.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** The commands that must be signed when a secret is configured. */
export const CONTROL_COMMANDS: ReadonlySet<string> = new Set(['quit', 'restart', 'join_group', 'leave_group']);

/** Why a control command was refused. */
export type SignatureRefusal = 'unsigned' | 'bad-signature' | 'stale' | 'replayed';

/** What `_reserved.signature` holds. */
export interface Signature {
  v: 1;
  /** When it was signed, ms since the epoch. */
  ts: number;
  /** 16 random bytes, hex: a replay is recognised by it. */
  nonce: string;
  /** Which secret signed (its first 8 hex of SHA-256), to try that one first. */
  kid: string;
  /** base64 HMAC-SHA256. */
  mac: string;
}

/** The fields of a body that are signed. */
interface Signed {
  type: string;
  name: string;
  category: string;
  content: unknown;
  _reserved: Record<string, unknown>;
}

/** Whether a body is a control command (`type` command, a control name). */
export function isControl(body: { type: string; name: string }): boolean {
  return body.type === 'command' && CONTROL_COMMANDS.has(body.name);
}

/** JSON with object keys sorted at every level: the same text on both sides. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const keys = Object.keys(value as Record<string, unknown>).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
}

function keyId(secret: string | Buffer): string {
  return createHmac('sha256', 'postage-key-id').update(secret).digest('hex').slice(0, 8);
}

function mac(secret: string | Buffer, s: Omit<Signature, 'mac' | 'kid'>, routingKey: string, body: Signed): string {
  const text = ['postage-control-v1', String(s.ts), s.nonce, routingKey, body.type, body.name, body.category, canonicalJson(body.content)].join('\n');
  return createHmac('sha256', secret).update(text).digest('base64');
}

/** Signs `body` for `routingKey` with the first secret (sets `_reserved.signature`). */
export function signBody(body: Signed, routingKey: string, secrets: readonly (string | Buffer)[], now = Date.now()): void {
  const secret = secrets[0];
  if (secret === undefined) throw new Error('signBody: no secret');
  const base = { v: 1 as const, ts: now, nonce: randomBytes(16).toString('hex') };
  body._reserved['signature'] = { ...base, kid: keyId(secret), mac: mac(secret, base, routingKey, body) } satisfies Signature;
}

/** What a verification needs besides the body. */
export interface VerifyOptions {
  secrets: readonly (string | Buffer)[];
  /** Oldest (and farthest in the future, for clocks that differ) a signature may be, in ms. */
  maxAgeMs: number;
  /** Records a nonce; false when it was seen already (a replay). */
  remember(nonce: string, ts: number): boolean;
  now?: number;
}

/** Checks the signature of a control command sent with `routingKey`; undefined when it is good. */
export function verifyBody(body: Signed, routingKey: string, options: VerifyOptions): SignatureRefusal | undefined {
  const s = body._reserved['signature'] as Partial<Signature> | undefined;
  if (s === undefined || s === null || typeof s !== 'object') return 'unsigned';
  if (s.v !== 1 || typeof s.ts !== 'number' || typeof s.nonce !== 'string' || typeof s.mac !== 'string') return 'bad-signature';
  const got = Buffer.from(s.mac, 'base64');
  const base = { v: 1 as const, ts: s.ts, nonce: s.nonce };
  // The secret named by kid first, then the others (rotation); compared in constant time.
  const ordered = [...options.secrets].sort((a, b) => Number(keyId(b) === s.kid) - Number(keyId(a) === s.kid));
  const good = ordered.some((secret) => {
    const want = Buffer.from(mac(secret, base, routingKey, body), 'base64');
    return want.length === got.length && timingSafeEqual(want, got);
  });
  if (!good) return 'bad-signature';
  const now = options.now ?? Date.now();
  if (Math.abs(now - s.ts) > options.maxAgeMs) return 'stale';
  if (!options.remember(s.nonce, s.ts)) return 'replayed';
  return undefined;
}

/**
 * The nonces of the control commands accepted lately, per receiver, for as long as a
 * signature is young enough to be accepted at all: a copy replayed within that time is
 * recognised. The daemon carries it across a re-exec (`export()` / `import()`).
 */
export class NonceStore {
  /** `scope nonce` → its signature time. */
  readonly #seen = new Map<string, number>();

  constructor(private readonly maxAgeMs: number) {}

  /** Records a nonce for a receiver; false when that receiver had it already. */
  remember(scope: string, nonce: string, ts: number, now = Date.now()): boolean {
    this.#sweep(now);
    const key = `${scope} ${nonce}`;
    if (this.#seen.has(key)) return false;
    this.#seen.set(key, ts);
    return true;
  }

  #sweep(now: number): void {
    for (const [key, ts] of this.#seen) if (Math.abs(now - ts) > this.maxAgeMs) this.#seen.delete(key);
  }

  /** The nonces still young enough to matter: [scope nonce, ts]. */
  export(now = Date.now()): Array<[string, number]> {
    this.#sweep(now);
    return [...this.#seen];
  }

  import(entries: ReadonlyArray<readonly [string, number]>): void {
    for (const [key, ts] of entries) if (typeof key === 'string' && typeof ts === 'number') this.#seen.set(key, ts);
  }
}
