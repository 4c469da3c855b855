import type { LifecycleEvent } from './message-processor.js';

/** What the process does when a processor receives `restart` (the daemon installs it). */
export type RestartHook = (event: LifecycleEvent) => void | Promise<void>;

// Kept on globalThis under a registered symbol so that a plugin that loaded a second copy
// of the library still reaches the hook the daemon installed.
const KEY = Symbol.for('postage.restartHook');
type HookHolder = { [KEY]?: RestartHook | undefined };

/**
 * Installs the process-level restart hook. The library never touches the process itself:
 * without a hook, `restart` is logged and ignored.
 */
export function setRestartHook(hook: RestartHook | undefined): void {
  (globalThis as HookHolder)[KEY] = hook;
}

/** The installed restart hook, if any. */
export function getRestartHook(): RestartHook | undefined {
  return (globalThis as HookHolder)[KEY];
}
