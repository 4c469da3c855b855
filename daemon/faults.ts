/**
 * Faults of plugin code that reach the process: an uncaught exception, an unhandled promise
 * rejection, a call to `process.exit()`. One plugin's fault must not stop the others for
 * longer than one in-place restart:
 *
 * - the fault is attributed to a plugin when its stack goes through a file of the plugin
 *   folder (a `.ts` plugin's frames carry its own path: the loader keeps the file's URL);
 * - an unhandled rejection is logged (naming the plugin) and nothing else: the process is
 *   sound, only a promise was forgotten;
 * - an uncaught exception or `process.exit()` restarts the daemon in place (same PID, the
 *   unique queues kept): after an uncaught exception Node's state may be broken, so the
 *   process is replaced, gracefully (every application drains, acks and closes first; the
 *   faulty plugin's in-flight messages too, or they are redelivered to the next generation);
 * - a plugin that does it `quarantineAfter` times within `quarantineWindow` is quarantined:
 *   not loaded for `quarantineTime` (doubling each time), `status` says why, the others run;
 * - faults of no plugin (the daemon's own code) restart it too, unless they keep coming
 *   (`quarantineAfter` within the window): then the daemon exits 1 and leaves it to its
 *   supervisor, rather than loop.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DaemonConfig } from './config.js';
import type { RestartState } from './restart-state.js';

/** What the daemon does about a fatal fault. */
export type FaultDecision =
  | { action: 'restart'; file: string | undefined; crashes: number }
  | { action: 'quarantine'; file: string; until: number; crashes: number }
  | { action: 'exit'; crashes: number };

/** Key of the crashes no plugin is blamed for. */
const DAEMON = '(daemon)';

/** @internal */
export class Faults {
  constructor(
    private readonly pluginDir: string,
    private readonly state: RestartState,
    private readonly config: Readonly<DaemonConfig['faults']>,
  ) {}

  /** The plugin file a stack trace goes through, if any (the innermost frame wins). */
  attribute(stack: string | undefined): string | undefined {
    if (!stack) return undefined;
    const dir = this.pluginDir.endsWith(path.sep) ? this.pluginDir : this.pluginDir + path.sep;
    for (const line of stack.split('\n').slice(1)) {
      // `at fn (file:///dir/p.mjs?v=123:4:5)`, `at /dir/p.cjs:4:5`, `at async file:///…`
      const m = /(file:\/\/[^\s)]+?|\/[^\s():]+?)(?:\?[^\s):]*)?:\d+:\d+\)?\s*$/.exec(line.trim());
      if (!m) continue;
      let file = m[1] as string;
      try {
        if (file.startsWith('file://')) file = fileURLToPath(file);
      } catch {
        continue;
      }
      if (file.startsWith(dir) && path.dirname(file) === this.pluginDir) return file;
    }
    return undefined;
  }

  /** Records a fatal fault of `file` (undefined: no plugin) and says what to do. */
  decide(file: string | undefined, reason: string): FaultDecision {
    const { quarantineAfter, quarantineWindow, quarantineTime, quarantineMaxTime } = this.config;
    const crashes = this.state.recordCrash(file ?? DAEMON, quarantineWindow);
    if (crashes < quarantineAfter) return { action: 'restart', file, crashes };
    if (file === undefined) return { action: 'exit', crashes };
    const q = this.state.quarantine(file, `crashed the daemon ${crashes} times within ${Math.round(quarantineWindow / 1000)} s; last: ${reason}`, quarantineTime, quarantineMaxTime);
    return { action: 'quarantine', file, until: q.until, crashes };
  }
}
