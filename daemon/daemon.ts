/**
 * The daemon's life: start (broker, own application, plugins, watcher), restart (drain,
 * close, hand over to the next generation), stop (drain, close, exit 0). What the process
 * then does (exit or exec) is main.ts's business, through `finish`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { Connection, DAEMON_DISCOVERY_KEY, type ConnectionOptions, type ControlEvent, type DaemonStatus, type GenericApplication, type Logger } from 'postage';
import { reachesWholeProcess } from 'postage/internal';
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
}

export type Phase = 'starting' | 'running' | 'restarting' | 'stopping';

interface PidUsage {
  cpu: number;
  memory: number;
}
const pidusageOf = createRequire(import.meta.url)('pidusage') as (pid: number, options: { maxage: number }) => Promise<PidUsage>;
/** CPU percent is measured between two calls; the history is kept an hour (pidusage's default is a minute). */
const pidusage = (pid: number): Promise<PidUsage> => pidusageOf(pid, { maxage: 3600_000 });

/**
 * The broker options of the configuration, as the library takes them. Every field is given,
 * so the library reads nothing from the environment (the configuration already did).
 */
export function connectionOptions(config: Readonly<DaemonConfig>, host: string, logger: Logger): ConnectionOptions {
  const b = config.broker;
  const common = { heartbeat: b.heartbeat, connectAttempts: b.connectAttempts, clientName: `postaged ${config.name} ${process.pid}@${host}`, identity: { host }, logger };
  return { ...common, url: [...b.url], hosts: [...b.hosts], port: b.port, vhost: b.vhost, user: b.user, password: b.password };
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
  /** Every running application's groups when the generation closed, for the next one. */
  private groupsAtClose: Record<string, string[]> = {};

  constructor(private readonly options: DaemonOptions) {
    const { config, logger } = options;
    this.host = config.host || os.hostname();
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
    await this.connection.ready();
    const host = new Host({ connection: this.connection, logger: this.options.logger, config, state, host: this.host, onControl: (app, isDaemon, event) => this.onControl(app, isDaemon, event) });
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

  /**
   * A `quit` or `restart` an application handled. Acted on exactly once, from what the
   * delivery says, without hashing bodies (Python sends identical restart bodies, and each
   * must be obeyed):
   * - only `P@H` and `@H` reach several applications of this process, and the daemon's own
   *   application gets a copy of both: a plugin leaves those to it;
   * - a command with a `message_id` already acted on (a copy delivered again, in this
   *   generation or the next) is ignored;
   * - a restart sent before this generation started is already satisfied (coalesced).
   * `quit` to the daemon's own application stops everything; to a plugin, only that plugin
   * (the library already stopped it).
   */
  private onControl(app: GenericApplication, isDaemon: boolean, event: ControlEvent): void {
    const { state, config } = this.options;
    const to = app.name;
    const meta = { to, key: event.routingKey, ...(event.messageId ? { messageId: event.messageId } : {}) };
    if (event.kind === 'quit') {
      if (isDaemon) {
        event.hold();
        void this.stop('quit command', 'quit');
      }
      return;
    }
    if (!isDaemon && reachesWholeProcess(event.routingKey)) {
      this.log.debug('restart on a key every application of this process gets: left to the daemon', meta);
      return;
    }
    if (event.messageId !== undefined && !state.claim(event.messageId)) {
      this.log.info('restart command already acted on: ignored', meta);
      return;
    }
    if (event.sentAt !== undefined && event.sentAt < state.generationStartedAt - config.restart.coalesceSkew) {
      this.log.info('restart command sent before this generation started: already satisfied', { ...meta, sentAt: new Date(event.sentAt).toISOString(), generation: state.generation });
      return;
    }
    // The commands behind this one stay queued for the next generation (a second restart from
    // Python must restart it again). Not awaited: the event comes from inside that
    // application's step, and the restart closes it.
    event.hold();
    void this.restart(`restart command to ${to}`, event.messageId);
  }

  private async onAdd(file: string): Promise<void> {
    if (this.phase !== 'running' || !this.hostApps) return;
    if (this.hostApps.isLive(file)) return this.onChange([file]);
    const t0 = performance.now();
    this.log.info('new plugin file: loading it live', { file });
    await this.hostApps.addPlugins([file], { revive: true });
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
    await host.addPlugins(files, { revive: true });
  }

  private async onRemove(file: string): Promise<void> {
    if (this.phase !== 'running' || !this.hostApps) return;
    await this.hostApps.removePlugin(file);
  }

  /** Drains and closes everything, then asks for a re-exec (same PID, same command line). */
  async restart(reason: string, messageId?: string): Promise<void> {
    if (this.phase === 'restarting' || this.phase === 'stopping') return;
    this.phase = 'restarting';
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
    this.end({ kind: 'exec', state: this.options.state.next(reason, this.groupsAtClose) });
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
    this.groupsAtClose = this.hostApps?.groups() ?? {};
    await this.hostApps?.close(reason);
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
