import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { brand, ExitScheduler } from '../errors.js';
import { silentLogger, type Logger } from '../logger.js';
import { MicroThread } from './micro-thread.js';

/** Options of `new MicroScheduler()`. */
export interface SchedulerOptions {
  /** Stop `run()` once no thread is left. Default: true (Python's `autoquit`). */
  autoquit?: boolean;
  /** How long (ms) a thread may run steps before it yields to the others. Default: 1; 0 yields after every step. */
  quantumMs?: number;
  logger?: Logger;
}

/**
 * Runs microthreads cooperatively (Python's `MicroScheduler`). In Node the event loop does
 * the I/O, so the scheduler's job is lifecycle and fairness: every thread runs in its own
 * loop, and once it has run steps for `quantumMs` it yields to the event loop
 * (`setImmediate`), so a thread flooded with work cannot starve the others.
 */
export class MicroScheduler {
  autoquit: boolean;
  readonly quantumMs: number;
  readonly logger: Logger;
  private readonly threads = new Set<MicroThread>();
  private readonly loops = new Map<MicroThread, Promise<void>>();
  private started = false;
  private exitRequested = false;
  private resolveRun: (() => void) | undefined;
  private rejectRun: ((err: unknown) => void) | undefined;

  constructor(options: SchedulerOptions = {}) {
    this.autoquit = options.autoquit ?? true;
    this.quantumMs = Math.max(0, options.quantumMs ?? 1);
    this.logger = options.logger ?? silentLogger;
  }

  /** Adds a thread; if the scheduler is running, the thread starts at once. */
  add(thread: MicroThread): void {
    if (this.threads.has(thread)) return;
    this.threads.add(thread);
    thread.running = true;
    if (this.started) this.startLoop(thread);
  }

  /** Stops and forgets a thread (its current step finishes first). */
  remove(thread: MicroThread): void {
    thread.stop();
  }

  /** The threads currently scheduled. */
  get size(): number {
    return this.threads.size;
  }

  /**
   * Starts every thread and resolves when the scheduler is done: after `exit()`, an
   * `ExitScheduler` from a step, or (with `autoquit`) when the last thread stopped.
   * Any other error thrown by a step is logged and stops only that thread.
   */
  run(): Promise<void> {
    if (this.started) throw new Error('MicroScheduler.run() called twice');
    this.started = true;
    const done = new Promise<void>((resolve, reject) => {
      this.resolveRun = resolve;
      this.rejectRun = reject;
    });
    for (const t of this.threads) this.startLoop(t);
    this.checkDone();
    return done;
  }

  /** Stops every thread after its current step; `run()` resolves once they have all ended. */
  exit(): void {
    this.exitRequested = true;
    for (const t of this.threads) t.stop();
    this.checkDone();
  }

  private startLoop(thread: MicroThread): void {
    const loop = (async () => {
      try {
        await thread.create();
        let sliceStart = performance.now();
        while (thread.running && !this.exitRequested) {
          await thread.step();
          // Yield to the event loop once the thread has had its time slice: yielding after
          // every step cost a full event-loop turn per message (and one ack frame each).
          if (performance.now() - sliceStart >= this.quantumMs) {
            await yieldToEventLoop();
            sliceStart = performance.now();
          }
        }
      } catch (err) {
        if (err instanceof ExitScheduler) this.exit();
        else {
          this.logger.error('microthread failed and was stopped', { thread: thread.constructor.name, reason: (err as Error)?.message });
          try {
            thread.crashed(err);
          } catch {
            // a thread's own report of its crash must not take the scheduler down
          }
        }
      } finally {
        thread.running = false;
        this.threads.delete(thread);
        this.loops.delete(thread);
        this.checkDone();
      }
    })();
    this.loops.set(thread, loop);
  }

  private checkDone(): void {
    if (!this.started) return;
    if (this.loops.size > 0) return;
    if (this.exitRequested || this.autoquit) {
      const resolve = this.resolveRun;
      this.resolveRun = undefined;
      this.rejectRun = undefined;
      resolve?.();
    }
  }
}
brand(MicroScheduler, 'MicroScheduler');
