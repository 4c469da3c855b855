import type { Logger } from '../logger.js';

/**
 * Logs at most one line per key per interval, with the number of lines it held back:
 * a flood of malformed messages must not flood the log too.
 * @internal
 */
export class RateLimitedLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(private readonly logger: Logger, private readonly intervalMs: number) {}

  warn(key: string, message: string, meta: Record<string, unknown>): void {
    const now = Date.now();
    const entry = this.last.get(key);
    if (entry && now - entry.at < this.intervalMs) {
      entry.suppressed++;
      return;
    }
    this.last.set(key, { at: now, suppressed: 0 });
    this.logger.warn(message, entry?.suppressed ? { ...meta, suppressed: entry.suppressed } : meta);
  }
}
