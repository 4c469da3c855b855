/**
 * Starts and stops V8's CPU profiler from inside a process (node:inspector), so that a
 * profile covers only the window being studied (a drain, a run of calls) and not the set-up
 * around it. The result is a `.cpuprofile` as `node --cpu-prof` writes it; read it with
 * `node dist/bench/profile-summary.js FILE` or Chrome DevTools.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';

export class CpuProfiler {
  private readonly session = new Session();

  /** Samples every `intervalUs` µs (V8's default is 1000; finer catches short functions). */
  async start(intervalUs = 100): Promise<void> {
    this.session.connect();
    await this.session.post('Profiler.enable');
    await this.session.post('Profiler.setSamplingInterval', { interval: intervalUs });
    await this.session.post('Profiler.start');
  }

  /** Stops and writes the profile to `file`. */
  async stop(file: string): Promise<void> {
    const { profile } = await this.session.post('Profiler.stop');
    writeFileSync(file, JSON.stringify(profile));
    this.session.disconnect();
  }
}

/**
 * V8's sampling heap profiler over a window, counting objects already collected too, so the
 * profile says what was *allocated* (and by which function), which is what garbage
 * collection time follows. Written as a `.heapprofile`.
 */
export class AllocationSampler {
  private readonly session = new Session();

  /** Samples one allocation every `intervalBytes` bytes on average. */
  async start(intervalBytes = 4096): Promise<void> {
    this.session.connect();
    await this.session.post('HeapProfiler.enable');
    await this.session.post('HeapProfiler.startSampling', { samplingInterval: intervalBytes, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  }

  async stop(file: string): Promise<void> {
    const { profile } = await this.session.post('HeapProfiler.stopSampling');
    writeFileSync(file, JSON.stringify(profile));
    this.session.disconnect();
  }
}
