import { brand } from '../errors.js';
import type { MessageResult } from '../wire/message.js';

/** The reply function an RPC handler receives; a plain value is wrapped in `MessageResult`. */
export type ReplyFunc = (result: MessageResult | unknown) => Promise<void>;

/**
 * A handler written as a class (Python's `Handler`): subclass it, implement `call()`, and
 * register the class with the same decorators as a method. For each message the processor
 * builds `new Cls(processor, data, replyFunc)` and awaits `call()`.
 */
export class Handler<P = unknown, D = any> {
  readonly processor: P;
  readonly data: D;
  /** Present for RPC handlers. */
  readonly replyFunc: ReplyFunc | undefined;

  constructor(processor: P, data: D, replyFunc?: ReplyFunc) {
    this.processor = processor;
    this.data = data;
    this.replyFunc = replyFunc;
  }

  /** Does the work; may be async. */
  call(): unknown {
    return undefined;
  }
}
brand(Handler, 'Handler');

/** True for a `Handler` subclass (not an instance). @internal */
export function isHandlerClass(value: unknown): value is new (processor: unknown, data: unknown, reply?: ReplyFunc) => Handler {
  return typeof value === 'function' && value.prototype !== undefined && (value.prototype as object) instanceof Handler;
}
