/**
 * What one generation of the daemon hands to the next across a re-exec, in the environment
 * variable `POSTAGED_STATE` (JSON):
 * - the generation number, when the first generation started, why the last restart happened;
 * - the ids (AMQP `message_id`) of control commands already acted on, for `dedupeWindow` ms,
 *   so that a copy delivered again to the next generation is not acted on twice;
 * - the groups each application is in after run-time `join_group` / `leave_group` (their
 *   bindings live on at the broker, so the next generation must know them);
 * - the applications stopped by `quit`, which stay stopped until their file changes;
 * - when each plugin crashed the process lately, and which plugins are in quarantine (not
 *   loaded until a time, because they kept crashing);
 * - the nonces of the signed control commands accepted lately, so that one replayed after a
 *   re-exec is still recognised;
 * - the values of the metrics' counters (daemon/metrics-carry.ts), so that they never go back
 *   to zero while the process lives.
 *
 * Each generation also knows when it itself started: a restart command sent before that is
 * already satisfied (a storm of restarts ends in few re-execs, never a loop).
 */
import { isCarried as isCarriedMetrics, type CarriedMetric } from './metrics-carry.js';

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
  /** Plugin file (or `(daemon)`) → times (ms) it crashed the process lately. */
  crashes?: Record<string, number[]>;
  /** Plugin file → its quarantine: until when (ms), why, and how many times so far. */
  quarantine?: Record<string, Quarantine>;
  /** Nonces of the signed control commands accepted lately: [receiver nonce, signature time]. */
  nonces?: Array<[string, number]>;
  /** Counter values of the metrics, compacted (metrics-carry.ts). */
  metrics?: CarriedMetric[];
}

/** A plugin kept out of the daemon for a while because it kept crashing the process. */
export interface Quarantine {
  /** Until when (ms since the epoch). */
  until: number;
  reason: string;
  /** How many quarantines so far: each one is twice as long as the one before. */
  count: number;
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
    (data.quit === undefined || (Array.isArray(data.quit) && data.quit.every((q) => typeof q === 'string'))) &&
    (data.crashes === undefined || (typeof data.crashes === 'object' && data.crashes !== null && Object.values(data.crashes).every((c) => Array.isArray(c) && c.every((x) => typeof x === 'number')))) &&
    (data.quarantine === undefined ||
      (typeof data.quarantine === 'object' &&
        data.quarantine !== null &&
        Object.values(data.quarantine).every((q) => q !== null && typeof q === 'object' && typeof q.until === 'number' && typeof q.reason === 'string' && typeof q.count === 'number'))) &&
    (data.nonces === undefined || (Array.isArray(data.nonces) && data.nonces.every((n) => Array.isArray(n) && typeof n[0] === 'string' && typeof n[1] === 'number'))) &&
    (data.metrics === undefined || isCarriedMetrics(data.metrics))
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
  readonly #crashes: Map<string, number[]>;
  readonly #quarantine: Map<string, Quarantine>;
  /** The nonces the previous generation had accepted. */
  readonly carriedNonces: ReadonlyArray<readonly [string, number]>;
  /** What the metrics counted in the previous generations. */
  readonly carriedMetrics: readonly CarriedMetric[];

  private constructor(carried: Carried, private readonly dedupeWindow: number, now: number, problem?: string) {
    this.generation = carried.generation;
    this.startedAt = carried.startedAt;
    this.generationStartedAt = now;
    this.lastRestartReason = carried.lastRestartReason;
    this.problem = problem;
    for (const [id, at] of carried.handled) if (now - at < dedupeWindow) this.#handled.set(id, at);
    this.#carriedGroups = new Map(Object.entries(carried.groups ?? {}));
    this.#quit = new Set(carried.quit ?? []);
    this.#crashes = new Map(Object.entries(carried.crashes ?? {}));
    this.#quarantine = new Map(Object.entries(carried.quarantine ?? {}));
    this.carriedNonces = carried.nonces ?? [];
    this.carriedMetrics = carried.metrics ?? [];
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

  /** Records that `source` (a plugin file, or `(daemon)`) crashed the process; returns its crashes within `windowMs`. */
  recordCrash(source: string, windowMs: number, now = Date.now()): number {
    const recent = (this.#crashes.get(source) ?? []).filter((at) => now - at < windowMs);
    recent.push(now);
    this.#crashes.set(source, recent);
    return recent.length;
  }

  /** Puts a plugin in quarantine: `baseMs` the first time, twice as long each time after, at most `maxMs`. */
  quarantine(file: string, reason: string, baseMs: number, maxMs: number, now = Date.now()): Quarantine {
    const count = (this.#quarantine.get(file)?.count ?? 0) + 1;
    const q = { until: now + Math.min(maxMs, baseMs * 2 ** (count - 1)), reason, count };
    this.#quarantine.set(file, q);
    this.#crashes.delete(file);
    return q;
  }

  /** The quarantine a plugin is in now, if any. */
  quarantineOf(file: string, now = Date.now()): Quarantine | undefined {
    const q = this.#quarantine.get(file);
    return q && q.until > now ? q : undefined;
  }

  /** Lifts a quarantine (the file changed: a new version gets a fresh start). */
  liftQuarantine(file: string): void {
    this.#quarantine.delete(file);
    this.#crashes.delete(file);
  }

  /**
   * The value of `POSTAGED_STATE` for the next generation; `groups`: every running
   * application's groups now; `metrics`: the counters to go on from (when metrics are on).
   */
  next(reason: string, groups: Record<string, string[]> = {}, nonces: Array<[string, number]> = [], metrics: CarriedMetric[] = []): string {
    const now = Date.now();
    const handled = [...this.#handled.entries()].filter(([, at]) => now - at < this.dedupeWindow).slice(-MAX_IDS);
    const carried: Carried = {
      generation: this.generation + 1,
      startedAt: this.startedAt,
      lastRestartReason: reason,
      handled,
      groups,
      quit: [...this.#quit],
      crashes: Object.fromEntries(this.#crashes),
      quarantine: Object.fromEntries(this.#quarantine),
      nonces,
      ...(metrics.length > 0 ? { metrics } : {}),
    };
    return JSON.stringify(carried);
  }
}
