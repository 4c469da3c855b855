/**
 * Watches the plugin folder (chokidar, top level only). New files are reported at once;
 * changed files are collected and reported together after `debounce` ms of quiet (saving
 * ten files gives one report, hence one restart); removed files are reported at once.
 * What each event means is decided by the daemon (daemon/daemon.ts).
 */
import path from 'node:path';
import type { FSWatcher } from 'chokidar';
import { isPluginFile } from './plugin-loader.js';

export interface PluginWatcherOptions {
  /** Milliseconds of quiet before changed files are reported. */
  debounce: number;
  onAdd(file: string): void;
  onChange(files: string[]): void;
  onRemove(file: string): void;
  onError(error: Error): void;
}

export class PluginWatcher {
  private watcher: FSWatcher | undefined;
  private readonly changed = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(readonly dir: string, private readonly options: PluginWatcherOptions) {}

  private mine(file: string): boolean {
    return path.dirname(file) === this.dir && isPluginFile(file);
  }

  /** Starts watching; resolves once chokidar has scanned the folder. */
  async start(): Promise<void> {
    // Loaded here, not with the daemon: a new generation's first answers do not wait for it.
    const { watch } = await import('chokidar');
    if (this.closed) return;
    const watcher = watch(this.dir, {
      ignoreInitial: true,
      depth: 0,
      // A file being copied in is reported once its size has been stable for 100 ms.
      awaitWriteFinish: { stabilityThreshold: 100, pollInterval: 20 },
      ignored: (file, stats) => Boolean(stats?.isFile()) && !isPluginFile(file),
    });
    this.watcher = watcher;
    watcher.on('add', (file) => this.mine(file) && !this.closed && this.options.onAdd(file));
    watcher.on('change', (file) => this.mine(file) && this.noteChange(file));
    watcher.on('unlink', (file) => this.mine(file) && !this.closed && this.options.onRemove(file));
    watcher.on('error', (err) => this.options.onError(err instanceof Error ? err : new Error(String(err))));
    return new Promise((resolve) => watcher.once('ready', () => resolve()));
  }

  private noteChange(file: string): void {
    if (this.closed) return;
    this.changed.add(file);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      const files = [...this.changed];
      this.changed.clear();
      if (!this.closed) this.options.onChange(files);
    }, this.options.debounce);
  }

  /** Stops watching; pending change reports are dropped. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    const w = this.watcher;
    this.watcher = undefined;
    await w?.close();
  }
}
