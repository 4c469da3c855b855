/**
 * The daemon's watchdog: how late the event loop runs, and how much memory the process holds.
 *
 * - Event loop: a timer set every `interval` ms notes how late it fires. A late timer means
 *   something held the loop: every application of the process stalled meanwhile (and none
 *   could send heartbeats or acks). Blocks longer than `loopLagWarn` are logged, naming the
 *   application whose handler held the loop when one did (each processor times the
 *   synchronous part of its handler calls); the largest of the last minute and the last one
 *   are in `status`.
 * - Memory: above `maxRss` MiB the daemon restarts in place, gracefully, before the OOM
 *   killer stops it the hard way (and loses what it had in flight).
 */
import type { GenericApplication, Logger } from 'postage';

/** What `status` shows of the event loop. */
export interface LoopStatus {
  /** Largest delay (ms) of the loop over the last minute. */
  maxLagMs: number;
  /** The last block longer than `loopLagWarn`, if any. */
  lastBlock: { ms: number; at: string; application: string | null; handler: string | null } | null;
}

export interface WatchdogOptions {
  interval: number;
  loopLagWarn: number;
  /** MiB; 0: no cap. */
  maxRss: number;
  logger: Logger;
  /** The applications running now (to name the one that held the loop). */
  applications(): readonly GenericApplication[];
  /** Asked once when the memory cap is passed. */
  onMemoryCap(rssMiB: number): void;
  /** Told of each block longer than `loopLagWarn`, with the application that held the loop when known (metrics count them). */
  onBlock?(lagMs: number, application: string | null): void;
}

/** @internal */
export class Watchdog {
  #timer: NodeJS.Timeout | undefined;
  #expected = 0;
  /** Delays of the last minute: [time, lag]. */
  #lags: Array<[number, number]> = [];
  #lastBlock: LoopStatus['lastBlock'] = null;
  #capped = false;

  constructor(private readonly options: WatchdogOptions) {}

  start(): void {
    if (this.#timer) return;
    this.#expected = performance.now() + this.options.interval;
    this.#timer = setInterval(() => this.#tick(), this.options.interval);
    this.#timer.unref();
  }

  #tick(): void {
    const now = performance.now();
    const lag = Math.max(0, now - this.#expected);
    this.#expected = now + this.options.interval;
    const wall = Date.now();
    this.#lags.push([wall, lag]);
    while (this.#lags.length > 0 && wall - (this.#lags[0]?.[0] ?? wall) > 60_000) this.#lags.shift();
    if (this.options.loopLagWarn > 0 && lag >= this.options.loopLagWarn) this.#block(lag, now);
    if (this.options.maxRss > 0 && !this.#capped) {
      const rss = process.memoryUsage.rss() / 1024 / 1024;
      if (rss > this.options.maxRss) {
        this.#capped = true;
        this.options.logger.warn('memory above the cap: restarting in place', { rssMiB: Math.round(rss), maxRssMiB: this.options.maxRss });
        this.options.onMemoryCap(rss);
      }
    }
  }

  /** A late tick: which application held the loop? The one whose handler call ended last within the block. */
  #block(lag: number, now: number): void {
    let culprit: { app: string; handler: string; ms: number } | undefined;
    for (const app of this.options.applications()) {
      const hold = app.lastLoopHold;
      // The hold ended during the late stretch, and is the larger part of it.
      if (hold && hold.endedAt >= now - lag - this.options.interval && hold.ms >= lag / 2 && (!culprit || hold.ms > culprit.ms)) {
        culprit = { app: app.name, handler: hold.handler, ms: hold.ms };
      }
    }
    this.#lastBlock = { ms: Math.round(lag), at: new Date().toISOString(), application: culprit?.app ?? null, handler: culprit?.handler ?? null };
    this.options.onBlock?.(lag, culprit?.app ?? null);
    this.options.logger.warn(
      culprit ? `event loop blocked for ${Math.round(lag)} ms by application ${culprit.app} (${culprit.handler})` : `event loop blocked for ${Math.round(lag)} ms`,
      { lagMs: Math.round(lag), ...(culprit ? { application: culprit.app, handler: culprit.handler, holdMs: Math.round(culprit.ms) } : {}) },
    );
  }

  status(): LoopStatus {
    const max = this.#lags.reduce((m, [, lag]) => Math.max(m, lag), 0);
    return { maxLagMs: Math.round(max), lastBlock: this.#lastBlock };
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
