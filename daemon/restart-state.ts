/**
 * What one generation of the daemon hands to the next across a re-exec, in the environment
 * variable `POSTAGED_STATE` (JSON):
 * - the generation number, when the first generation started, why the last restart happened;
 * - the ids (AMQP `message_id`) of control commands already acted on, for `dedupeWindow` ms,
 *   so that a copy delivered again to the next generation is not acted on twice;
 * - the groups each application is in after run-time `join_group` / `leave_group` (their
 *   bindings live on at the broker, so the next generation must know them);
 * - the applications stopped by `quit`, which stay stopped until their file changes.
 *
 * Each generation also knows when it itself started: a restart command sent before that is
 * already satisfied (a storm of restarts ends in few re-execs, never a loop).
 */

export const STATE_ENV = 'POSTAGED_STATE';

/** At most this many ids are carried (the environment is not a database). */
const MAX_IDS = 256;

interface Carried {
  generation: number;
  startedAt: string;
  lastRestartReason: string | null;
  /** [id, time first seen in ms] */
  handled: Array<[string, number]>;
  /** Application name → its groups at the end of the previous generation. */
  groups?: Record<string, string[]>;
  /** Applications stopped by `quit`, by name. */
  quit?: string[];
}

function isCarried(data: Partial<Carried>): data is Carried {
  return (
    Number.isInteger(data.generation) &&
    (data.generation as number) >= 1 &&
    typeof data.startedAt === 'string' &&
    !Number.isNaN(Date.parse(data.startedAt)) &&
    (data.lastRestartReason === null || typeof data.lastRestartReason === 'string') &&
    Array.isArray(data.handled) &&
    data.handled.every((h) => Array.isArray(h) && typeof h[0] === 'string' && typeof h[1] === 'number') &&
    (data.groups === undefined ||
      (typeof data.groups === 'object' && data.groups !== null && Object.values(data.groups).every((g) => Array.isArray(g) && g.every((x) => typeof x === 'string')))) &&
    (data.quit === undefined || (Array.isArray(data.quit) && data.quit.every((q) => typeof q === 'string')))
  );
}

/** The restart bookkeeping of this process. */
export class RestartState {
  /** 1 for the first process, +1 at every re-exec. */
  readonly generation: number;
  /** ISO time the first generation started. */
  readonly startedAt: string;
  /** When this generation started (ms since the epoch). */
  readonly generationStartedAt: number;
  lastRestartReason: string | null;
  /** Why the carried state was ignored, if it was. */
  readonly problem: string | undefined;
  readonly #handled = new Map<string, number>();
  /** Groups carried from the previous generation, by application name. */
  readonly #carriedGroups: ReadonlyMap<string, readonly string[]>;
  readonly #quit: Set<string>;

  private constructor(carried: Carried, private readonly dedupeWindow: number, now: number, problem?: string) {
    this.generation = carried.generation;
    this.startedAt = carried.startedAt;
    this.generationStartedAt = now;
    this.lastRestartReason = carried.lastRestartReason;
    this.problem = problem;
    for (const [id, at] of carried.handled) if (now - at < dedupeWindow) this.#handled.set(id, at);
    this.#carriedGroups = new Map(Object.entries(carried.groups ?? {}));
    this.#quit = new Set(carried.quit ?? []);
  }

  /** Re-exec count so far. */
  get restarts(): number {
    return this.generation - 1;
  }

  /** Reads the state left by the previous generation (a fresh one if there is none or it is damaged). */
  static fromEnv(value: string | undefined, dedupeWindow: number, now = new Date()): RestartState {
    const fresh: Carried = { generation: 1, startedAt: now.toISOString(), lastRestartReason: null, handled: [] };
    if (value === undefined || value === '') return new RestartState(fresh, dedupeWindow, now.getTime());
    try {
      const data = JSON.parse(value) as Partial<Carried>;
      if (!isCarried(data)) return new RestartState(fresh, dedupeWindow, now.getTime(), `${STATE_ENV} has an unexpected shape: ignored`);
      return new RestartState(data, dedupeWindow, now.getTime());
    } catch (err) {
      return new RestartState(fresh, dedupeWindow, now.getTime(), `${STATE_ENV} is not JSON (${(err as Error).message}): ignored`);
    }
  }

  /**
   * Claims a control command id: true the first time it is seen (within the window), false
   * for every later copy, in this generation or a later one.
   */
  claim(id: string): boolean {
    const now = Date.now();
    const seen = this.#handled.get(id);
    if (seen !== undefined && now - seen < this.dedupeWindow) return false;
    this.#handled.set(id, now);
    return true;
  }

  /** The groups an application ended the previous generation in, if it was running then. */
  groupsOf(app: string): readonly string[] | undefined {
    return this.#carriedGroups.get(app);
  }

  /** Whether an application was stopped by `quit` (in this generation or an earlier one). */
  isQuit(app: string): boolean {
    return this.#quit.has(app);
  }

  /** Records (or forgets, when its file changes) that an application was stopped by `quit`. */
  setQuit(app: string, quit: boolean): void {
    if (quit) this.#quit.add(app);
    else this.#quit.delete(app);
  }

  /** The value of `POSTAGED_STATE` for the next generation; `groups`: every running application's groups now. */
  next(reason: string, groups: Record<string, string[]> = {}): string {
    const now = Date.now();
    const handled = [...this.#handled.entries()].filter(([, at]) => now - at < this.dedupeWindow).slice(-MAX_IDS);
    const carried: Carried = { generation: this.generation + 1, startedAt: this.startedAt, lastRestartReason: reason, handled, groups, quit: [...this.#quit] };
    return JSON.stringify(carried);
  }
}
