import { isUtf8 } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { PostageError } from '../errors.js';

/** Limits checked on every incoming body before it is parsed, and how numbers are read. */
export interface DecodeLimits {
  /** Largest body accepted, in bytes. Default: 1 MiB. */
  maxBytes?: number;
  /** Deepest nesting of arrays and objects accepted. Default: 128. */
  maxDepth?: number;
  /**
   * Read integers beyond 2^53 exactly, as `bigint` (JSON numbers are doubles in JavaScript:
   * 12345678901234567890 would come back as 12345678901234567000), and write `bigint` values
   * as JSON integers. Costs a scan of every body. Default: false.
   */
  bigint?: boolean;
}

/** An encoder turns a body into bytes and back (Python's `Encoder`). Replaceable per producer/consumer. */
export interface Encoder {
  readonly contentType: string;
  encode(data: unknown): Buffer;
  decode(bytes: Buffer): unknown;
}

/** The strict decoder: invalid UTF-8 throws instead of becoming U+FFFD. Its error is the cause of ours. */
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** A UTF-8 byte order mark, which a body may start with (dropped, as `TextDecoder` drops it). */
const BOM = [0xef, 0xbb, 0xbf] as const;

export const DEFAULT_MAX_BYTES = 1024 * 1024;
export const DEFAULT_MAX_DEPTH = 128;

/**
 * The default JSON encoder, Python's `json` on the wire:
 * - decoding checks size and nesting depth with a byte scan *before* `JSON.parse`: parsing a
 *   million levels works, but the deep copy each handler gets (`structuredClone`) throws a
 *   RangeError beyond a few thousand;
 * - `NaN`, `Infinity` and `-Infinity`, which Python's `json` writes as bare words, are read
 *   as those numbers (JSON has no such words: `JSON.parse` refuses them) and written back the
 *   same way (`JSON.stringify` would write `null`), so a Python peer reads its own values;
 * - with `bigint: true`, integers beyond 2^53 are read and written exactly.
 */
export class JsonEncoder implements Encoder {
  readonly contentType: string = 'application/json';
  readonly maxBytes: number;
  readonly maxDepth: number;
  readonly bigint: boolean;

  constructor(limits: DecodeLimits = {}) {
    this.maxBytes = limits.maxBytes ?? DEFAULT_MAX_BYTES;
    this.maxDepth = limits.maxDepth ?? DEFAULT_MAX_DEPTH;
    this.bigint = limits.bigint ?? false;
  }

  encode(data: unknown): Buffer {
    // The common case costs one walk of the value (~0.4 µs for a typical body here) on top of
    // a plain stringify; only a value holding NaN, ±Infinity or a bigint takes the slow path.
    const text = hasPythonNumbers(data, 0) ? stringifyPython(data) : JSON.stringify(data);
    return Buffer.from(text, 'utf8');
  }

  decode(bytes: Buffer): unknown {
    if (bytes.length > this.maxBytes) {
      throw new PostageError('POSTAGE_ERR_BODY_TOO_LARGE', `body of ${bytes.length} bytes exceeds the limit of ${this.maxBytes}`, {
        size: bytes.length,
        limit: this.maxBytes,
      });
    }
    // Valid JSON nests one level per two bytes at most, so a body this short can only be too
    // deep if it is not valid JSON: its depth is scanned only when it fails, to give the same
    // error as a scan first would.
    const scanFirst = bytes.length >= 2 * (this.maxDepth + 1);
    if (scanFirst) this.#checkDepth(bytes);
    try {
      return this.#parse(bytes);
    } catch (err) {
      if (!scanFirst) this.#checkDepth(bytes);
      throw err;
    }
  }

  #checkDepth(bytes: Buffer): void {
    if (jsonDepth(bytes, this.maxDepth) > this.maxDepth) {
      throw new PostageError('POSTAGE_ERR_TOO_DEEP', `body nests deeper than the limit of ${this.maxDepth}`, { limit: this.maxDepth });
    }
  }

  #parse(bytes: Buffer): unknown {
    const source = utf8Text(bytes);
    try {
      return this.bigint ? parsePython(source, true) : JSON.parse(source);
    } catch (first) {
      try {
        // Python's NaN / Infinity: JSON.parse refuses them; read them and try again.
        if (!this.bigint && /NaN|Infinity/.test(source)) return parsePython(source, false);
      } catch {
        // invalid for another reason too: report JSON.parse's own error, its position is the body's
      }
      let cause = first;
      if (this.bigint) {
        try {
          JSON.parse(source);
        } catch (plain) {
          cause = plain; // its position is the body's, not that of the marked copy
        }
      }
      throw new PostageError('POSTAGE_ERR_DECODE', `body is not valid JSON: ${(cause as Error).message}`, {}, { cause });
    }
  }
}

/**
 * The text of a body, strictly: invalid UTF-8 throws instead of becoming U+FFFD. `isUtf8`
 * then `toString` is the native check; the fatal `TextDecoder` cost several times as much
 * and now only says, for a body that fails, what is wrong with it.
 */
function utf8Text(bytes: Buffer): string {
  if (!isUtf8(bytes)) {
    try {
      UTF8.decode(bytes);
    } catch (cause) {
      throw new PostageError('POSTAGE_ERR_DECODE', 'body is not valid UTF-8', {}, { cause });
    }
  }
  const bom = bytes.length >= 3 && bytes[0] === BOM[0] && bytes[1] === BOM[1] && bytes[2] === BOM[2];
  return bom ? bytes.toString('utf8', 3) : bytes.toString('utf8');
}

/** Whether a value holds what plain JSON cannot write: NaN, ±Infinity, a bigint. Gives up (false) past 256 levels: stringify then throws its own error. */
function hasPythonNumbers(value: unknown, depth: number): boolean {
  if (typeof value === 'number') return !Number.isFinite(value);
  if (typeof value === 'bigint') return true;
  if (value === null || typeof value !== 'object' || depth > 256) return false;
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') value = (value as { toJSON(): unknown }).toJSON();
  if (value === null || typeof value !== 'object') return hasPythonNumbers(value, depth + 1);
  for (const key in value) if (hasPythonNumbers((value as Record<string, unknown>)[key], depth + 1)) return true;
  return false;
}

/** A marker no body can hold by chance: random per call. */
function marker(): string {
  return `\u0000postage:${randomBytes(8).toString('hex')}:`;
}

/** JSON with NaN, Infinity, -Infinity and bigints written as bare tokens, as Python's `json` writes them. */
function stringifyPython(data: unknown): string {
  const mark = marker();
  const text = JSON.stringify(data, (_key, v: unknown) => {
    if (typeof v === 'number' && !Number.isFinite(v)) return `${mark}${String(v)}`;
    if (typeof v === 'bigint') return `${mark}${v.toString()}`;
    return v;
  });
  // JSON.stringify escapes the marker's NUL as \u0000: match it as written.
  const written = JSON.stringify(mark).slice(1, -1);
  return text.replace(new RegExp(`"${escapeRegExp(written)}(NaN|-?Infinity|-?\\d+)"`, 'g'), '$1');
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Parses JSON that may hold Python's bare NaN / Infinity / -Infinity, and (with `bigint`)
 * integers too long for a double: those tokens, outside strings, become marked strings that
 * the reviver turns back into numbers (or bigints).
 */
function parsePython(source: string, bigint: boolean): unknown {
  const mark = marker();
  let out = '';
  let from = 0;
  let inString = false;
  for (let i = 0; i < source.length; i++) {
    const c = source.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) {
      inString = true;
      continue;
    }
    let token: string | undefined;
    if (source.startsWith('NaN', i)) token = 'NaN';
    else if (source.startsWith('Infinity', i)) token = 'Infinity';
    else if (source.startsWith('-Infinity', i)) token = '-Infinity';
    else if (bigint && (c === 0x2d || (c >= 0x30 && c <= 0x39))) {
      const m = /^-?\d+(?![.\deE])/.exec(source.slice(i, i + 400));
      // Only integers that a double cannot hold exactly are marked.
      if (m && m[0].replace('-', '').length >= 16 && !Number.isSafeInteger(Number(m[0]))) token = m[0];
      else if (m) i += m[0].length - 1;
    }
    if (token === undefined) continue;
    out += source.slice(from, i) + JSON.stringify(mark + token);
    i += token.length - 1;
    from = i + 1;
  }
  out += source.slice(from);
  return JSON.parse(out, (_key, v: unknown) => {
    if (typeof v !== 'string' || !v.startsWith(mark)) return v;
    const token = v.slice(mark.length);
    if (token === 'NaN') return NaN;
    if (token === 'Infinity') return Infinity;
    if (token === '-Infinity') return -Infinity;
    return BigInt(token);
  });
}

/**
 * Nesting depth of a JSON text, counted on its bytes without parsing; stops counting
 * once `stopAbove` is exceeded so a hostile body costs at most one linear scan.
 * @internal
 */
export function jsonDepth(bytes: Uint8Array, stopAbove = Infinity): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped byte
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      depth++;
      if (depth > max) {
        max = depth;
        if (max > stopAbove) return max;
      }
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}
