import { brand } from '../errors.js';

/**
 * A cooperative unit of work (Python's `MicroThread`): `create()` runs once when the
 * scheduler starts it, then `step()` runs again and again until the thread stops.
 * A step should do a bounded amount of work and return; an async step may await I/O.
 * Throw `ExitScheduler` from a step to stop the whole scheduler.
 */
export class MicroThread {
  /** False once `stop()` was called or the scheduler removed the thread. */
  running = true;

  /** Runs once before the first step. */
  create(): void | Promise<void> {}

  /** One slice of work. */
  step(): void | Promise<void> {}

  /** Asks the scheduler to run no more steps of this thread. */
  stop(): void {
    this.running = false;
  }

  /** Called by the scheduler when `create()` or `step()` threw (other than `ExitScheduler`); the thread is stopped. */
  crashed(_error: unknown): void {}
}
brand(MicroThread, 'MicroThread');
