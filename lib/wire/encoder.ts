import { PostageError } from '../errors.js';

/** Limits checked on every incoming body before it is parsed. */
export interface DecodeLimits {
  /** Largest body accepted, in bytes. Default: 1 MiB. */
  maxBytes?: number;
  /** Deepest nesting of arrays and objects accepted. Default: 128. */
  maxDepth?: number;
}

/** An encoder turns a body into bytes and back (Python's `Encoder`). Replaceable per producer/consumer. */
export interface Encoder {
  readonly contentType: string;
  encode(data: unknown): Buffer;
  decode(bytes: Buffer): unknown;
}

/** One strict decoder for all bodies: invalid UTF-8 throws instead of becoming U+FFFD. */
const UTF8 = new TextDecoder('utf-8', { fatal: true });

export const DEFAULT_MAX_BYTES = 1024 * 1024;
export const DEFAULT_MAX_DEPTH = 128;

/**
 * The default JSON encoder. Decoding checks size and nesting depth with a byte scan
 * *before* `JSON.parse`: parsing a million levels works, but the deep copy each handler
 * gets (`structuredClone`) throws a RangeError beyond a few thousand.
 */
export class JsonEncoder implements Encoder {
  readonly contentType: string = 'application/json';
  readonly maxBytes: number;
  readonly maxDepth: number;

  constructor(limits: DecodeLimits = {}) {
    this.maxBytes = limits.maxBytes ?? DEFAULT_MAX_BYTES;
    this.maxDepth = limits.maxDepth ?? DEFAULT_MAX_DEPTH;
  }

  encode(data: unknown): Buffer {
    return Buffer.from(JSON.stringify(data), 'utf8');
  }

  decode(bytes: Buffer): unknown {
    if (bytes.length > this.maxBytes) {
      throw new PostageError('POSTAGE_ERR_BODY_TOO_LARGE', `body of ${bytes.length} bytes exceeds the limit of ${this.maxBytes}`, {
        size: bytes.length,
        limit: this.maxBytes,
      });
    }
    const depth = jsonDepth(bytes, this.maxDepth);
    if (depth > this.maxDepth) {
      throw new PostageError('POSTAGE_ERR_TOO_DEEP', `body nests deeper than the limit of ${this.maxDepth}`, { limit: this.maxDepth });
    }
    let source: string;
    try {
      source = UTF8.decode(bytes);
    } catch (cause) {
      throw new PostageError('POSTAGE_ERR_DECODE', 'body is not valid UTF-8', {}, { cause });
    }
    try {
      return JSON.parse(source);
    } catch (cause) {
      throw new PostageError('POSTAGE_ERR_DECODE', `body is not valid JSON: ${(cause as Error).message}`, {}, { cause });
    }
  }
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
