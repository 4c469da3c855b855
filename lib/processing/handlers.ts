/**
 * Handler registration: the decorators of Python Postage (`MessageHandler`, `RpcHandler`,
 * `MessageHandlerFullBody`, `MessageFilter`) as TypeScript standard decorators, and the same
 * functions usable from plain JavaScript through a class's `static handlers` map.
 *
 * A decorator marks the function (or `Handler` class) it decorates, as Python set
 * `func._message_handler`; the processor collects the marks when it is built. This needs
 * no `Symbol.metadata`, which Node 20 lacks.
 */

const MARK = Symbol.for('postage.handlerMark');
const APPLY = Symbol.for('postage.decoratorApply');

/** `message` handlers all run; for `rpc` only the last registered one answers. */
export type HandlerCategory = 'message' | 'rpc';

/** One route of a handler: the messages it is called for, and what it receives. */
export interface Route {
  category: HandlerCategory;
  type: string;
  /** `undefined` matches every name of this type. */
  name: string | undefined;
  /** `content` hands the handler `body.content`; `body` the whole body. */
  receives: 'content' | 'body';
}

/** A filter and its extra arguments: `fn(copy, ...args)`. */
export interface FilterSpec {
  fn: (data: any, ...args: any[]) => unknown;
  args: unknown[];
}

/** What decorators attach to a handler. @internal */
export interface HandlerMark {
  routes: Route[];
  filters: FilterSpec[];
}

/** A Postage decorator: works as a standard decorator and as a plain function call. */
export interface PostageDecorator {
  <T>(value: T, context?: { kind: string }): any;
  /** @internal */
  readonly [APPLY]: (mark: HandlerMark) => void;
}

/** The mark of a function or class, if any. @internal */
export function markOf(value: unknown): HandlerMark | undefined {
  if (typeof value !== 'function') return undefined;
  return (value as unknown as Record<symbol, HandlerMark | undefined>)[MARK];
}

function ensureMark(value: Function): HandlerMark {
  const holder = value as unknown as Record<symbol, HandlerMark | undefined>;
  if (!Object.prototype.hasOwnProperty.call(value, MARK)) {
    Object.defineProperty(value, MARK, { value: { routes: [], filters: [] }, enumerable: false });
  }
  return holder[MARK] as HandlerMark;
}

function makeDecorator(apply: (mark: HandlerMark) => void): PostageDecorator {
  const decorator = function (value: unknown, context?: { kind: string }): unknown {
    if (context?.kind === 'field') {
      // A decorated field (e.g. `@MessageHandler(...) static Echo = class extends Handler {}`)
      // is marked when its initial value is known.
      return (initial: unknown) => {
        if (typeof initial === 'function') apply(ensureMark(initial));
        return initial;
      };
    }
    if (typeof value !== 'function') throw new TypeError('a Postage handler decorator applies to a method, a Handler class or a function');
    apply(ensureMark(value));
    return context ? undefined : value;
  } as PostageDecorator;
  Object.defineProperty(decorator, APPLY, { value: apply });
  return decorator;
}

function route(category: HandlerCategory, receives: Route['receives'], type: string, name?: string): PostageDecorator {
  if (typeof type !== 'string' || type === '') throw new TypeError('a message handler needs a message type such as "command"');
  return makeDecorator((mark) => mark.routes.push({ category, type, name, receives }));
}

/** Calls the method with a deep copy of `body.content` for every matching fire-and-forget message. */
export function MessageHandler(type: string, name?: string): PostageDecorator {
  return route('message', 'content', type, name);
}

/** Like `MessageHandler`, but the method receives the whole body (fingerprint included). */
export function MessageHandlerFullBody(type: string, name?: string): PostageDecorator {
  return route('message', 'body', type, name);
}

/** Calls the method with `(content, reply)` for a matching RPC; only the last registered one answers. */
export function RpcHandler(type: string, name?: string): PostageDecorator {
  return route('rpc', 'content', type, name);
}

/**
 * Runs `fn(copy, ...args)` before the handler; its return value is what the handler sees.
 * Throw `FilterError` to skip this handler, `RejectMessage` to reject the message.
 * Stacked filters run bottom-up, in the order the decorators are applied.
 */
export function MessageFilter<A extends unknown[]>(fn: (data: any, ...args: A) => unknown, ...args: A): PostageDecorator {
  if (typeof fn !== 'function') throw new TypeError('MessageFilter needs a function');
  return makeDecorator((mark) => mark.filters.push({ fn, args }));
}

/**
 * The plain-JavaScript form: `static handlers = { onEcho: MessageHandler('command', 'echo') }`,
 * or an array `[MessageFilter(f), MessageHandler(...)]` read top-down like stacked decorators.
 * Returns the mark for a method name. @internal
 */
export function markFromDeclaration(declaration: unknown): HandlerMark | undefined {
  const list = Array.isArray(declaration) ? [...declaration] : [declaration];
  const mark: HandlerMark = { routes: [], filters: [] };
  // Stacked decorators apply bottom-up; an array is written top-down, so apply it reversed.
  for (const d of list.reverse()) {
    const apply = typeof d === 'function' ? (d as Partial<PostageDecorator>)[APPLY] : undefined;
    if (!apply) return undefined;
    apply(mark);
  }
  return mark;
}
