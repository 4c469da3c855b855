/**
 * The daemon's life: start (broker, own application, plugins, watcher), restart (drain,
 * close, hand over to the next generation), stop (drain, close, exit 0). What the process
 * then does (exit or exec) is main.ts's business, through `finish`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { Connection, DAEMON_DISCOVERY_KEY, setRestartHook, type ConnectionOptions, type DaemonStatus, type LifecycleEvent, type Logger } from 'postage';
import type { DaemonConfig } from './config.js';
import { DaemonApplication } from './daemon-application.js';
import { Host, type RootLogger } from './host.js';
import { isPluginFile } from './plugin-loader.js';
import { PluginWatcher } from './plugin-watcher.js';
import type { RestartState } from './restart-state.js';

/** How the process should end this generation. */
export type Outcome = { kind: 'exit'; code: number } | { kind: 'exec'; state: string };

export interface DaemonOptions {
  config: Readonly<DaemonConfig>;
  logger: RootLogger;
  state: RestartState;
  version: string;
  /** Called once: exit with a code, or re-exec with the state for the next generation. */
  finish: (outcome: Outcome) => void;
  /** Called when the daemon enters a phase (systemd's readiness protocol listens here). */
  onPhase?: (phase: Phase, detail: string) => void;
}

export type Phase = 'starting' | 'running' | 'restarting' | 'stopping';

interface PidUsage {
  cpu: number;
  memory: number;
}
const pidusageOf = createRequire(import.meta.url)('pidusage') as (pid: number, options: { maxage: number }) => Promise<PidUsage>;
/** CPU percent is measured between two calls; the history is kept an hour (pidusage's default is a minute). */
const pidusage = (pid: number): Promise<PidUsage> => pidusageOf(pid, { maxage: 3600_000 });

/** The broker options of the configuration, as the library takes them. */
export function connectionOptions(config: Readonly<DaemonConfig>, host: string, logger: Logger): ConnectionOptions {
  const b = config.broker;
  const common = { heartbeat: b.heartbeat, connectAttempts: b.connectAttempts, clientName: `postaged ${config.name} ${process.pid}@${host}`, logger };
  if (b.url.length > 0) return { ...common, url: [...b.url] };
  return { ...common, hosts: [...b.hosts], port: b.port, vhost: b.vhost, user: b.user, password: b.password };
}

export class Daemon {
  readonly host: string;
  readonly pluginDir: string;
  private readonly log: Logger;
  private readonly connection: Connection;
  private hostApps: Host | undefined;
  private watcher: PluginWatcher | undefined;
  /** Where the daemon is in its life (read by main.ts for signals). */
  phase: Phase = 'starting';
  private stopAfterRestart = false;
  private finished = false;

  constructor(private readonly options: DaemonOptions) {
    const { config, logger } = options;
    this.host = config.host || process.env['POSTAGE_HOSTNAME'] || os.hostname();
    this.pluginDir = path.resolve(config.pluginDir);
    this.log = logger.child({ app: config.name });
    this.connection = new Connection(connectionOptions(config, this.host, logger.child({ app: config.name, component: 'broker' })));
    // Plugins that create producers without a connection get the daemon's (configured) broker.
    Connection.setDefault(this.connection);
  }

  /** Starts everything; throws if the broker is unreachable or the daemon's own application cannot start. */
  async start(): Promise<void> {
    const t0 = performance.now();
    const { config, state } = this.options;
    setRestartHook((event) => this.onRestartCommand(event));
    await this.connection.ready();
    const host = new Host({ connection: this.connection, logger: this.options.logger, config, host: this.host });
    this.hostApps = host;
    const own = new DaemonApplication({
      name: config.name,
      host: this.host,
      connection: this.connection,
      logger: this.options.logger.child({ app: config.name }),
      drainTimeout: config.drainTimeout,
      topology: { ...config.topology },
      extraKeys: [DAEMON_DISCOVERY_KEY],
      status: () => this.status(),
    });
    // `quit` to the daemon (or to P@H): the library stops the daemon's application; stop the rest.
    own.events.on('stopped', (event: { reason: string }) => {
      if (event.reason === 'quit') void this.stop('quit command', 'quit');
    });
    if ((await host.run(own, null)) === 'failed') throw new Error(`the daemon's own application ${config.name} could not start (see the log)`);
    const files = fs
      .readdirSync(this.pluginDir)
      .filter(isPluginFile)
      .sort()
      .map((f) => path.join(this.pluginDir, f));
    await host.addPlugins(files);
    if (config.watch && this.phase === 'starting') {
      this.watcher = new PluginWatcher(this.pluginDir, {
        debounce: config.watchDebounce,
        onAdd: (file) => void this.onAdd(file),
        onChange: (changed) => void this.onChange(changed),
        onRemove: (file) => void this.onRemove(file),
        onError: (err) => this.log.warn('plugin folder watcher error', { reason: err.message }),
      });
      await this.watcher.start();
    }
    if (this.phase !== 'starting') return;
    this.phase = 'running';
    // The first measure sets pidusage's baseline: the first `status` then shows CPU since start.
    void pidusage(process.pid).catch(() => undefined);
    const apps = host.status();
    this.options.onPhase?.('running', `generation ${state.generation}: ${apps.map((a) => `${a.name} ${a.state}`).join(', ')}`);
    this.log.info('postaged ready', {
      generation: state.generation,
      restarts: state.restarts,
      lastRestartReason: state.lastRestartReason,
      pluginDir: this.pluginDir,
      applications: apps.map((a) => `${a.name}:${a.state}`),
      startMs: Math.round(performance.now() - t0),
      uptimeMs: Math.round(process.uptime() * 1000),
    });
  }

  private onRestartCommand(event: LifecycleEvent): void {
    const id = event.messageId ?? 'unknown';
    const app = event.processor.fingerprint.name;
    if (!this.options.state.claim(id)) {
      this.log.info('restart command already acted on: ignored', { to: app, messageId: id });
      return;
    }
    // Not awaited: the hook runs inside that application's step, and the restart closes it.
    void this.restart(`restart command to ${app}`, id);
  }

  private async onAdd(file: string): Promise<void> {
    if (this.phase !== 'running' || !this.hostApps) return;
    if (this.hostApps.isLive(file)) return this.onChange([file]);
    const t0 = performance.now();
    this.log.info('new plugin file: loading it live', { file });
    await this.hostApps.addPlugins([file]);
    this.log.info('plugin file handled', { file, ms: Math.round(performance.now() - t0) });
  }

  private async onChange(files: string[]): Promise<void> {
    if (this.phase !== 'running' || !this.hostApps) return;
    const host = this.hostApps;
    const running = files.filter((f) => host.isLive(f));
    if (running.length > 0) {
      // ES modules cannot be unloaded: new code for a running plugin means a new process image.
      await this.restart(`plugin changed: ${running.map((f) => path.basename(f)).join(', ')}`);
      return;
    }
    // Not running (failed, quit or disabled): try it again, live.
    this.log.info('plugin file changed: loading it again', { files });
    await host.addPlugins(files);
  }

  private async onRemove(file: string): Promise<void> {
    if (this.phase !== 'running' || !this.hostApps) return;
    await this.hostApps.removePlugin(file);
  }

  /** Drains and closes everything, then asks for a re-exec (same PID, same command line). */
  async restart(reason: string, messageId?: string): Promise<void> {
    if (this.phase === 'restarting' || this.phase === 'stopping') return;
    this.phase = 'restarting';
    this.options.onPhase?.('restarting', reason);
    const t0 = performance.now();
    this.log.info('restarting', { reason, ...(messageId ? { messageId } : {}), generation: this.options.state.generation });
    this.armWatchdog('restart');
    await this.closeAll('restart');
    if (this.stopAfterRestart) {
      this.log.info('a stop was requested during the restart: exiting instead of re-exec');
      this.end({ kind: 'exit', code: 0 });
      return;
    }
    this.log.info('re-exec', { nextGeneration: this.options.state.generation + 1, reason, closeMs: Math.round(performance.now() - t0) });
    this.end({ kind: 'exec', state: this.options.state.next(reason) });
  }

  /**
   * Stops everything gracefully, then exit 0. `quit` deletes each application's own queue;
   * `shutdown` (signals) leaves them to expire, so a restart by the service manager loses
   * nothing addressed to this host's instances.
   */
  async stop(reason: string, closeReason: 'quit' | 'shutdown'): Promise<void> {
    if (this.phase === 'stopping') return;
    if (this.phase === 'restarting') {
      this.stopAfterRestart = true;
      return;
    }
    this.phase = 'stopping';
    this.options.onPhase?.('stopping', reason);
    this.log.info('stopping', { reason });
    this.armWatchdog('stop');
    await this.closeAll(closeReason);
    this.log.info('stopped', { reason });
    this.end({ kind: 'exit', code: 0 });
  }

  private async closeAll(reason: string): Promise<void> {
    const watcher = this.watcher;
    this.watcher = undefined;
    await watcher?.close().catch(() => undefined);
    await this.hostApps?.close(reason);
    setRestartHook(undefined);
    // Closing the connection flushes the acks sent on its channels.
    await this.connection.close(reason);
    await Connection.closeAll(reason);
  }

  private armWatchdog(what: string): void {
    const ms = this.options.config.shutdownTimeout;
    setTimeout(() => {
      this.log.error(`${what} did not finish within ${ms} ms: exiting`, { open: this.openResources() });
      this.end({ kind: 'exit', code: 1 });
    }, ms).unref();
  }

  private end(outcome: Outcome): void {
    if (this.finished) return;
    this.finished = true;
    this.options.finish(outcome);
  }

  /** What is still open (for the watchdog and a forced exit). */
  openResources(): string[] {
    const open = this.hostApps?.openResources() ?? [];
    if (!this.connection.closed) open.push(`broker connection ${this.connection.displayUrl}`);
    if (this.watcher) open.push(`watcher on ${this.pluginDir}`);
    return open;
  }

  /** The value of RPC `status`. */
  async status(): Promise<DaemonStatus> {
    const { config, state, version } = this.options;
    let usage: PidUsage;
    try {
      usage = await pidusage(process.pid);
    } catch {
      usage = { cpu: 0, memory: process.memoryUsage.rss() };
    }
    return {
      name: config.name,
      pid: process.pid,
      host: this.host,
      version,
      uptime: Math.round((Date.now() - Date.parse(state.startedAt)) / 10) / 100,
      generation: state.generation,
      restarts: state.restarts,
      lastRestartReason: state.lastRestartReason,
      startedAt: state.startedAt,
      cpu: usage.cpu,
      memory: usage.memory,
      pluginDir: this.pluginDir,
      applications: this.hostApps?.status() ?? [],
    };
  }
}
