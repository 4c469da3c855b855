/**
 * What one generation of the daemon hands to the next across a re-exec, in the environment
 * variable `POSTAGED_STATE` (JSON): the generation number, when the first generation
 * started, why the last restart happened, and the ids of restart commands already acted on.
 *
 * A `restart` sent to `P@H` reaches every application of the daemon, each on its own queue:
 * the first copy restarts the process, and copies still queued when it exec'd are delivered
 * to the next generation. Remembering the ids (for `dedupeWindow` ms) makes each command
 * restart the process exactly once.
 */

export const STATE_ENV = 'POSTAGED_STATE';

/** At most this many ids are carried (the environment is not a database). */
const MAX_IDS = 256;

/**
 * Ids made from a hash of the body (`sha1:…`, commands without a message_id, e.g. from Python
 * Postage) are remembered only this long: long enough for the copies fanned out to the other
 * applications to arrive, short enough that a second, byte-identical restart is still obeyed.
 */
export const BODY_HASH_WINDOW_MS = 10_000;

interface Carried {
  generation: number;
  startedAt: string;
  lastRestartReason: string | null;
  /** [id, time first seen in ms] */
  handled: Array<[string, number]>;
}

/** The restart bookkeeping of this process. */
export class RestartState {
  /** 1 for the first process, +1 at every re-exec. */
  readonly generation: number;
  /** ISO time the first generation started. */
  readonly startedAt: string;
  lastRestartReason: string | null;
  /** Why the carried state was ignored, if it was. */
  readonly problem: string | undefined;
  private readonly handled = new Map<string, number>();

  private constructor(carried: Carried, private readonly dedupeWindow: number, problem?: string) {
    this.generation = carried.generation;
    this.startedAt = carried.startedAt;
    this.lastRestartReason = carried.lastRestartReason;
    this.problem = problem;
    const now = Date.now();
    for (const [id, at] of carried.handled) if (now - at < dedupeWindow) this.handled.set(id, at);
  }

  /** Re-exec count so far. */
  get restarts(): number {
    return this.generation - 1;
  }

  /** Reads the state left by the previous generation (a fresh one if there is none or it is damaged). */
  static fromEnv(value: string | undefined, dedupeWindow: number, now = new Date()): RestartState {
    const fresh: Carried = { generation: 1, startedAt: now.toISOString(), lastRestartReason: null, handled: [] };
    if (value === undefined || value === '') return new RestartState(fresh, dedupeWindow);
    try {
      const data = JSON.parse(value) as Partial<Carried>;
      const ok =
        Number.isInteger(data.generation) &&
        (data.generation as number) >= 1 &&
        typeof data.startedAt === 'string' &&
        !Number.isNaN(Date.parse(data.startedAt)) &&
        (data.lastRestartReason === null || typeof data.lastRestartReason === 'string') &&
        Array.isArray(data.handled) &&
        data.handled.every((h) => Array.isArray(h) && typeof h[0] === 'string' && typeof h[1] === 'number');
      if (!ok) return new RestartState(fresh, dedupeWindow, `${STATE_ENV} has an unexpected shape: ignored`);
      return new RestartState(data as Carried, dedupeWindow);
    } catch (err) {
      return new RestartState(fresh, dedupeWindow, `${STATE_ENV} is not JSON (${(err as Error).message}): ignored`);
    }
  }

  /**
   * Claims a restart command id: true the first time it is seen (within the window), false
   * for every later copy, in this generation or a later one.
   */
  private windowFor(id: string): number {
    return id.startsWith('sha1:') ? Math.min(BODY_HASH_WINDOW_MS, this.dedupeWindow) : this.dedupeWindow;
  }

  claim(id: string): boolean {
    const now = Date.now();
    const seen = this.handled.get(id);
    if (seen !== undefined && now - seen < this.windowFor(id)) return false;
    this.handled.set(id, now);
    return true;
  }

  /** Whether an id was already claimed. */
  has(id: string): boolean {
    const seen = this.handled.get(id);
    return seen !== undefined && Date.now() - seen < this.windowFor(id);
  }

  /** The value of `POSTAGED_STATE` for the next generation. */
  next(reason: string): string {
    const now = Date.now();
    const handled = [...this.handled.entries()].filter(([id, at]) => now - at < this.windowFor(id)).slice(-MAX_IDS);
    const carried: Carried = { generation: this.generation + 1, startedAt: this.startedAt, lastRestartReason: reason, handled };
    return JSON.stringify(carried);
  }
}
