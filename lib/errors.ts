/**
 * Error classes of the library. Every error the library throws on purpose is a
 * `PostageError` with a stable `code` (`POSTAGE_ERR_*`), documented in docs/errors.md.
 * Retired codes are never reused.
 */

/**
 * Makes `instanceof` work across two copies of the package (a plugin may load its own
 * copy of `postage`): instances carry a `Symbol.for` brand, and `Symbol.hasInstance`
 * checks the brand instead of the prototype chain.
 * @internal
 */
export function brand(cls: Function, name: string): void {
  const sym = Symbol.for(`postage.${name}`);
  Object.defineProperty(cls.prototype, sym, { value: true, enumerable: false });
  Object.defineProperty(cls, Symbol.hasInstance, {
    value(this: Function, obj: unknown): boolean {
      if (obj === null || (typeof obj !== 'object' && typeof obj !== 'function')) return false;
      // Subclasses inherit the static; fall back to the prototype chain for them so
      // `x instanceof SubClass` keeps its normal meaning.
      if (this !== cls) return Function.prototype[Symbol.hasInstance].call(this, obj);
      return (obj as Record<symbol, unknown>)[sym] === true;
    },
  });
}

/** Every stable error code, with the one-line meaning documented in docs/errors.md. */
export const ErrorCodes = {
  POSTAGE_ERR_CLOSED: 'the object was used after close()',
  POSTAGE_ERR_INVALID_ARGUMENT: 'an argument or option has a bad value',
  POSTAGE_ERR_DECODE: 'a message body is not valid JSON or not a Postage message',
  POSTAGE_ERR_BODY_TOO_LARGE: 'a message body is larger than the configured limit',
  POSTAGE_ERR_TOO_DEEP: 'a message body nests deeper than the configured limit',
  POSTAGE_ERR_BROKER_UNREACHABLE: 'the broker could not be reached',
  POSTAGE_ERR_FILTER: 'a message filter refused a message for one handler (FilterError)',
  POSTAGE_ERR_REJECT: 'a filter or handler rejected a message (RejectMessage)',
  POSTAGE_ERR_EXIT_SCHEDULER: 'a microthread asked its scheduler to stop (ExitScheduler)',
  POSTAGE_ERR_CONFIG: 'the daemon configuration is invalid',
  POSTAGE_ERR_PLUGIN: 'retired, never thrown: a plugin could not be loaded or started',
  POSTAGE_ERR_DUPLICATE_APP: 'retired, never thrown: two applications claim the same name',
  POSTAGE_ERR_TIMEOUT: 'an operation did not finish in time',
  POSTAGE_ERR_TOPOLOGY: 'a queue exists with flags other than the ones declared (the broker refused the declaration, 406)',
  POSTAGE_ERR_UNKNOWN_COMMAND: 'an RPC named a command the application has no handler for (the code of its error reply)',
  POSTAGE_ERR_PUBLISH: 'the broker refused a message, or the connection was lost before it confirmed it',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

/** Base class of every error the library throws on purpose. */
export class PostageError extends Error {
  readonly code: ErrorCode;
  /** Structured details (`key`, `value`, `queue`, …) for logs and tests. */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.details = Object.freeze({ ...details });
  }
}
brand(PostageError, 'PostageError');

/** Thrown when a closed object is used; `details.what` and `details.reason` say which and why. */
export class ClosedError extends PostageError {
  constructor(what: string, reason: string) {
    super('POSTAGE_ERR_CLOSED', `${what} is closed (${reason})`, { what, reason });
  }
}
brand(ClosedError, 'ClosedError');

/** A message filter throws this to skip the handler it guards (Python's `FilterError`). */
export class FilterError extends PostageError {
  constructor(message = 'message filtered out') {
    super('POSTAGE_ERR_FILTER', message);
  }
}
brand(FilterError, 'FilterError');

/** A filter or handler throws this to reject the message without requeue (Python's `RejectMessage`). */
export class RejectMessage extends PostageError {
  constructor(message = 'message rejected') {
    super('POSTAGE_ERR_REJECT', message);
  }
}
brand(RejectMessage, 'RejectMessage');

/** A microthread throws this from `step()` to stop its whole scheduler. */
export class ExitScheduler extends PostageError {
  constructor(message = 'scheduler exit requested') {
    super('POSTAGE_ERR_EXIT_SCHEDULER', message);
  }
}
brand(ExitScheduler, 'ExitScheduler');

/** Names the thing that is wrong for an invalid argument. */
export function invalidArgument(key: string, value: unknown, why: string): PostageError {
  return new PostageError('POSTAGE_ERR_INVALID_ARGUMENT', `${key}: ${why} (got ${safeString(value)})`, { key, value });
}

function safeString(value: unknown): string {
  try {
    const s = typeof value === 'string' ? JSON.stringify(value) : String(JSON.stringify(value) ?? value);
    return s.length > 120 ? `${s.slice(0, 117)}...` : s;
  } catch {
    return Object.prototype.toString.call(value);
  }
}
