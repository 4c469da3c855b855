import { markFromDeclaration, markOf, type FilterSpec, type HandlerMark, type Route } from './handlers.js';
import { isHandlerClass } from './handler.js';

/** One registered handler: how to call it and what it receives. @internal */
export interface HandlerEntry {
  /** A method name on the processor, or a `Handler` class. */
  target: string | Function;
  receives: Route['receives'];
  filters: FilterSpec[];
  /** For logs: `Class.method`. */
  label: string;
  /** The (category, type, name) it is registered for. */
  route: Route;
}

/** Handlers by `category|type|name` (name `*` for wildcard routes), in registration order. @internal */
export type HandlerTable = Map<string, HandlerEntry[]>;

export function routeKey(category: string, type: string, name: string | undefined): string {
  return `${category}|${type}|${name ?? '*'}`;
}

/**
 * Collects the handlers of a processor class and its ancestors, base first, in definition
 * order. A method overridden under the same name replaces the inherited registration when
 * the override is itself decorated; otherwise the inherited route calls the override.
 * @internal
 */
export function buildHandlerTable(cls: Function, stopAt: Function): HandlerTable {
  const chain: Function[] = [];
  for (let c: Function | null = cls; c && c !== Function.prototype; c = Object.getPrototypeOf(c) as Function | null) {
    chain.unshift(c);
    if (c === stopAt) break;
  }
  const byProperty = new Map<string, { mark: HandlerMark; target: string | Function; label: string }>();
  for (const c of chain) {
    for (const prop of Object.getOwnPropertyNames(c.prototype)) {
      if (prop === 'constructor') continue;
      const desc = Object.getOwnPropertyDescriptor(c.prototype, prop);
      const mark = markOf(desc?.value);
      if (mark && mark.routes.length > 0) byProperty.set(prop, { mark, target: prop, label: `${c.name}.${prop}` });
    }
    for (const prop of Object.getOwnPropertyNames(c)) {
      if (prop === 'prototype' || prop === 'handlers') continue;
      const desc = Object.getOwnPropertyDescriptor(c, prop);
      const value: unknown = desc?.value;
      const mark = markOf(value);
      if (mark && mark.routes.length > 0 && isHandlerClass(value)) byProperty.set(`static:${prop}`, { mark, target: value, label: `${c.name}.${prop}` });
    }
    const declared = Object.getOwnPropertyDescriptor(c, 'handlers')?.value as Record<string, unknown> | undefined;
    if (declared && typeof declared === 'object') {
      for (const [prop, declaration] of Object.entries(declared)) {
        const mark = markFromDeclaration(declaration);
        if (!mark || mark.routes.length === 0) throw new TypeError(`${c.name}.handlers.${prop}: expected MessageHandler(...), RpcHandler(...) or an array of them with MessageFilter(...)`);
        byProperty.set(prop, { mark, target: prop, label: `${c.name}.${prop}` });
      }
    }
  }
  const table: HandlerTable = new Map();
  for (const { mark, target, label } of byProperty.values()) {
    for (const r of mark.routes) {
      const key = routeKey(r.category, r.type, r.name);
      const list = table.get(key) ?? [];
      list.push({ target, receives: r.receives, filters: [...mark.filters], label, route: r });
      table.set(key, list);
    }
  }
  return table;
}

const NO_HANDLERS: readonly HandlerEntry[] = Object.freeze([]);

/**
 * The handlers of a body, resolved once per route rather than per message: for each
 * (category, type), the list of every registered name (its exact handlers, then the type's
 * wildcard ones), and the wildcard list for any other name. Bounded by the table: names read
 * from the wire are looked up, never added.
 * @internal
 */
export class RouteIndex {
  readonly #types = new Map<string, Map<string, { named: Map<string, readonly HandlerEntry[]>; wildcard: readonly HandlerEntry[] }>>();

  constructor(table: HandlerTable) {
    for (const entries of table.values()) {
      const { category, type } = entries[0]!.route;
      const byType = this.#types.get(category) ?? new Map();
      this.#types.set(category, byType);
      if (byType.has(type)) continue;
      const wildcard = table.get(routeKey(category, type, undefined)) ?? [];
      const named = new Map<string, readonly HandlerEntry[]>();
      for (const list of table.values()) {
        const r = list[0]!.route;
        if (r.category === category && r.type === type && r.name !== undefined) named.set(r.name, [...list, ...wildcard]);
      }
      byType.set(type, { named, wildcard });
    }
  }

  /** Handlers for (category, type, name), exact routes first, then wildcard ones. */
  lookup(category: string, type: string, name: string): readonly HandlerEntry[] {
    const routes = this.#types.get(category)?.get(type);
    if (!routes) return NO_HANDLERS;
    return routes.named.get(name) ?? routes.wildcard;
  }
}
