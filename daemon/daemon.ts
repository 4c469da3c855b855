/**
 * The daemon's life: start (broker, own application, plugins, watcher), restart (drain,
 * close, hand over to the next generation), stop (drain, close, exit 0). What the process
 * then does (exit or exec) is main.ts's business, through `finish`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Connection, DAEMON_DISCOVERY_KEY, PostageError, type ConnectionOptions, type ControlEvent, type DaemonStatus, type GenericApplication, type Logger } from 'postage';
import { reachesWholeProcess, readSigningKeys } from 'postage/internal';
import type { DaemonConfig } from './config.js';
import { ConfigError } from './config-error.js';
import { DaemonApplication } from './daemon-application.js';
import { Faults } from './faults.js';
import { Host, type HostObserver, type RootLogger } from './host.js';
import { parseListen } from './listen-address.js';
import { DaemonMetrics } from './metrics.js';
import { ObservabilityServer } from './observability-server.js';
import { readiness } from './readiness.js';
import { checkPlugin } from './plugin-check.js';
import { isPluginFile } from './plugin-loader.js';
import { installPluginResolution } from './plugin-resolution.js';
import { PluginWatcher } from './plugin-watcher.js';
import type { CarriedMetric } from './metrics-carry.js';
import type { RestartState } from './restart-state.js';
import { Watchdog } from './watchdog.js';

/** How the process should end this generation. */
export type Outcome = { kind: 'exit'; code: number } | { kind: 'exec'; state: string };

export interface DaemonOptions {
  config: Readonly<DaemonConfig>;
  logger: RootLogger;
  state: RestartState;
  version: string;
  /** Called once: exit with a code, or re-exec with the state for the next generation. */
  finish: (outcome: Outcome) => void;
  /** The private folder of transpiled `.ts` plugins (transpile-cache.ts), if there is one. */
  transpileCacheDir?: string;
  /** Called when the daemon enters a phase (systemd's readiness protocol listens here). */
  onPhase?: (phase: Phase, detail: string) => void;
}

export type Phase = 'starting' | 'running' | 'restarting' | 'stopping';

/**
 * CPU (percent of one core) since the last call, and memory (RSS bytes), of this process, as
 * `status` shows them. The first call gives the average since the process started.
 */
class Usage {
  #last = { at: performance.timeOrigin, cpu: 0 };

  now(): { cpu: number; memory: number } {
    const at = performance.timeOrigin + performance.now();
    const { user, system } = process.cpuUsage();
    const cpu = (user + system) / 1000; // ms
    const wall = at - this.#last.at;
    const percent = wall > 0 ? Math.round(((cpu - this.#last.cpu) / wall) * 10000) / 100 : 0;
    this.#last = { at, cpu };
    return { cpu: percent, memory: process.memoryUsage.rss() };
  }
}

/**
 * Why the daemon cannot start when its own application failed. Queues that exist with other
 * flags than the topology settings declare are a configuration error (exit 78, naming the
 * key): restarting would meet the same queues.
 */
function ownStartError(name: string, started: { error?: string; cause?: unknown }): Error {
  const reason = `the daemon's own application ${name} could not start: ${started.error ?? 'failed'}`;
  const cause = started.cause;
  if (cause instanceof PostageError && cause.code === 'POSTAGE_ERR_TOPOLOGY') {
    const key = cause.details['arg'] === 'x-queue-type' ? 'topology.quorum' : 'topology.mode';
    return new ConfigError(key, `${key}: ${reason}`);
  }
  return new Error(reason, { cause });
}

/**
 * The broker options of the configuration, as the library takes them. Every field is given,
 * so the library reads nothing from the environment (the configuration already did).
 */
export function connectionOptions(config: Readonly<DaemonConfig>, host: string, logger: Logger): ConnectionOptions {
  const b = config.broker;
  const common = {
    heartbeat: b.heartbeat,
    connectAttempts: b.connectAttempts,
    connectTimeout: b.connectTimeout,
    reconnectDelay: { ...b.reconnectDelay },
    clientName: `postaged ${config.name} ${process.pid}@${host}`,
    identity: { host },
    logger,
  };
  const t = b.tls;
  const tlsFiles = { ...(t.ca.length > 0 ? { ca: [...t.ca] } : {}), ...(t.cert ? { cert: t.cert } : {}), ...(t.key ? { key: t.key } : {}), ...(t.servername ? { servername: t.servername } : {}), ...(t.external ? { external: true } : {}) };
  // TLS settings apply to amqps:// URLs whatever `enabled` says; `enabled` turns the hosts form to amqps.
  const tls = { enabled: t.enabled, ...tlsFiles };
  const keyFile = config.security.signingKeyFile;
  const signing = keyFile ? { signing: { secrets: readSigningKeys(keyFile), maxAgeMs: config.security.signatureMaxAge } } : {};
  return { ...common, ...signing, tls, url: [...b.url], hosts: [...b.hosts], port: t.enabled && b.port === 5672 ? 5671 : b.port, vhost: b.vhost, user: b.user, password: b.password };
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
  private readonly faults: Faults;
  private readonly watchdog: Watchdog;
  /** Folder events that came while the generation was starting: handled once it runs. */
  private pendingEvents: Array<() => Promise<void>> = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Prometheus metrics and probes, when `metrics.listen` is set. */
  private readonly metrics: DaemonMetrics | undefined;
  private readonly server: ObservabilityServer | undefined;
  private readonly usage = new Usage();

  constructor(private readonly options: DaemonOptions) {
    const { config, logger } = options;
    this.host = config.host || os.hostname();
    this.pluginDir = path.resolve(config.pluginDir);
    this.log = logger.child({ app: config.name });
    this.connection = new Connection(connectionOptions(config, this.host, logger.child({ app: config.name, component: 'broker' })));
    // Plugins that create producers without a connection get the daemon's (configured) broker.
    Connection.setDefault(this.connection);
    // A signed command replayed after a re-exec is still a replay.
    this.connection.signing?.nonces.import(options.state.carriedNonces);
    this.faults = new Faults(this.pluginDir, options.state, config.faults);
    this.watchdog = new Watchdog({
      ...config.watchdog,
      logger: this.log,
      applications: () => this.hostApps?.applications() ?? [],
      onMemoryCap: (rss) => void this.restart(`memory above the cap (${Math.round(rss)} MiB > ${config.watchdog.maxRss} MiB)`),
      onBlock: (_lag, application) => this.metrics?.loopBlocked(application),
    });
    const listen = parseListen(config.metrics.listen);
    if (listen) {
      this.metrics = new DaemonMetrics({
        connection: this.connection,
        state: options.state,
        version: options.version,
        applications: () => this.hostApps?.status() ?? [],
        maxLoopLagMs: () => this.watchdog.status().maxLagMs,
        carried: options.state.carriedMetrics,
      });
      const metrics = this.metrics;
      this.server = new ObservabilityServer({
        listen,
        logger: this.log,
        metrics: () => metrics.exposition(),
        readiness: () => readiness(this.phase, this.connection.state, this.hostApps?.status() ?? []),
        health: () => ({ pid: process.pid, generation: options.state.generation, phase: this.phase, uptime: Math.round(process.uptime() * 100) / 100 }),
      });
    }
  }

  /**
   * Opens the metrics and probe listener, first thing: a probe gets an answer (`starting`)
   * while the broker is still being reached. A port that cannot be had is logged, and the
   * daemon runs on without it (its job is the messages; the probes will say the rest).
   */
  private async openListener(): Promise<void> {
    if (!this.server) return;
    try {
      const address = await this.server.listen();
      const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      this.log.info('metrics listening', { url: `http://${host}:${address.port}/metrics`, address: address.address, port: address.port });
    } catch (err) {
      this.log.error('metrics listener could not be opened: running without it', { listen: this.options.config.metrics.listen, reason: (err as Error).message });
    }
  }

  /** Starts everything; throws if the broker is unreachable or the daemon's own application cannot start. */
  async start(): Promise<void> {
    const t0 = performance.now();
    const { config, state } = this.options;
    await this.openListener();
    this.watchdog.start();
    // The watcher starts before anything is read, so that a file added or changed while the
    // generation starts is not missed; its events wait until the generation runs. It scans
    // the folder while the broker connection opens.
    if (config.watch) {
      this.watcher = new PluginWatcher(this.pluginDir, {
        debounce: config.watchDebounce,
        onAdd: (file) => this.folderEvent(() => this.onAdd(file)),
        onChange: (changed) => this.folderEvent(() => this.onChange(changed)),
        onRemove: (file) => this.folderEvent(() => this.onRemove(file)),
        onError: (err) => this.log.warn('plugin folder watcher error', { reason: err.message }),
      });
    }
    await Promise.all([this.watcher?.start(), this.connection.ready()]);
    const metrics = this.metrics;
    const observer: HostObserver | undefined = metrics && { starting: (app) => metrics.track(app), failed: (name) => metrics.loadFailed(name) };
    const host = new Host({
      connection: this.connection,
      logger: this.options.logger,
      config,
      state,
      host: this.host,
      onControl: (app, isDaemon, event) => this.onControl(app, isDaemon, event),
      ...(observer ? { observer } : {}),
    });
    this.hostApps = host;
    const own = new DaemonApplication({
      name: config.name,
      host: this.host,
      connection: this.connection,
      logger: this.options.logger.child({ app: config.name }),
      drainTimeout: config.drainTimeout,
      strictReplies: config.security.strictReplies,
      topology: { ...config.topology },
      traceContext: config.tracing.enabled,
      extraKeys: [DAEMON_DISCOVERY_KEY],
      status: () => this.status(),
    });
    const started = await host.run(own, null);
    if (started.state === 'failed') throw ownStartError(config.name, started);
    // The module hooks (`postage` for plugins, `.ts` transpiling) are installed only now: their
    // loader thread takes 40-250 ms to start, and blocks this one meanwhile. What already waits
    // for the daemon's own application (a `status` sent with the restart) is answered first.
    await this.settle(own);
    installPluginResolution(this.options.transpileCacheDir);
    const files = fs
      .readdirSync(this.pluginDir)
      .filter(isPluginFile)
      .sort()
      .map((f) => path.join(this.pluginDir, f));
    await host.addPlugins(files);
    if (this.phase !== 'starting') return;
    this.phase = 'running';
    for (const { file, until } of host.quarantined()) this.later(until - Date.now(), () => this.endQuarantine(file));
    const pending = this.pendingEvents.splice(0);
    for (const event of pending) await event();
    // The first measure sets the baseline: the first `status` then shows CPU since start.
    this.usage.now();
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

  /**
   * Lets `app` handle what the broker delivered to it as it started consuming: one turn of the
   * event loop (deliveries already read), then until nothing is in flight, at most 100 ms.
   */
  private async settle(app: GenericApplication): Promise<void> {
    const until = performance.now() + 100;
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (app.inFlightCount > 0 && performance.now() < until) await new Promise<void>((resolve) => setTimeout(resolve, 1));
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

  /** A folder event: now when the generation runs, after the start when it is starting. */
  private folderEvent(handle: () => Promise<void>): void {
    if (this.phase === 'starting') this.pendingEvents.push(handle);
    else void handle();
  }

  /** Runs `fn` after `ms` unless the generation ends first. */
  private later(ms: number, fn: () => unknown): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      void fn();
    }, Math.max(0, ms));
    timer.unref();
    this.timers.add(timer);
  }

  private async endQuarantine(file: string): Promise<void> {
    if (this.phase !== 'running' || !this.hostApps) return;
    this.log.info('quarantine over: loading the plugin again', { file });
    await this.hostApps.addPlugins([file]);
  }

  /**
   * A fault of plugin code that reached the process (faults.ts). An unhandled rejection is
   * only logged; an uncaught exception or a `process.exit()` restarts the daemon in place, and
   * quarantines a plugin that keeps doing it.
   */
  fault(kind: 'uncaught exception' | 'unhandled rejection' | 'process.exit()', error: unknown, fatal: boolean): void {
    const stack = error instanceof Error ? error.stack : undefined;
    const file = this.faults.attribute(stack);
    const app = file ? (this.hostApps?.nameOf(file) ?? path.basename(file)) : undefined;
    const who = app ? `plugin ${app}` : 'code of no plugin';
    const meta = { kind, plugin: app ?? null, file: file ?? null, reason: stack ?? String(error) };
    this.metrics?.fault(app, kind);
    if (!fatal) {
      this.log.error(`${kind} in ${who}: logged, nothing stopped`, meta);
      return;
    }
    if (this.phase === 'restarting' || this.phase === 'stopping') {
      this.log.error(`${kind} in ${who} while ${this.phase}: the process is being replaced anyway`, meta);
      return;
    }
    const decision = this.faults.decide(file, error instanceof Error ? error.message : String(error));
    if (decision.action === 'exit') {
      this.log.error(`${kind} in ${who}, ${decision.crashes} times within the window: exiting 1 for the supervisor to take over`, meta);
      void this.stop(`${kind} in ${who}`, 'shutdown', 1);
      return;
    }
    if (decision.action === 'quarantine') {
      this.metrics?.quarantined(app ?? path.basename(decision.file));
      this.log.error(`${kind} in ${who}, ${decision.crashes} times within the window: quarantined until ${new Date(decision.until).toISOString()}; restarting in place without it`, meta);
    } else {
      this.log.error(`${kind} in ${who}: restarting in place (the other applications drain and come back)`, { ...meta, crashes: decision.crashes });
    }
    void this.restart(`${kind} in ${who}`);
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
      // ES modules cannot be unloaded: new code for a running plugin means a new process image,
      // but only if the new code loads: a broken file must not replace a working generation.
      const checks = await Promise.all(running.map(async (f) => ({ file: f, check: await checkPlugin(f, this.options.config.startTimeout, this.options.config.strictModes, this.options.transpileCacheDir) })));
      const broken = checks.filter((c) => !c.check.ok);
      for (const { file, check } of broken) {
        host.setPending(file, `its file changed, but the new version does not load (${check.ok ? '' : check.reason}); this one keeps running`);
        this.log.error('changed plugin does not load: not restarting for it, the running version stays', { file, reason: check.ok ? undefined : check.reason });
      }
      const good = checks.filter((c) => c.check.ok).map((c) => c.file);
      for (const f of good) host.setPending(f, undefined);
      if (this.phase === 'running' && good.length > 0) await this.restart(`plugin changed: ${good.map((f) => path.basename(f)).join(', ')}`);
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
    const metrics = await this.carryMetrics();
    this.log.info('re-exec', { nextGeneration: this.options.state.generation + 1, reason, closeMs: Math.round(performance.now() - t0) });
    this.end({ kind: 'exec', state: this.options.state.next(reason, this.groupsAtClose, this.connection.signing?.nonces.export() ?? [], metrics) });
  }

  /**
   * Stops everything gracefully, then exit 0. `quit` deletes each application's own queue;
   * `shutdown` (signals) leaves them to expire, so a restart by the service manager loses
   * nothing addressed to this host's instances.
   */
  async stop(reason: string, closeReason: 'quit' | 'shutdown', code = 0): Promise<void> {
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
    this.end({ kind: 'exit', code });
  }

  /** The counters for the next generation (after the applications closed, so that their last counts are in). */
  private async carryMetrics(): Promise<CarriedMetric[]> {
    if (!this.metrics) return [];
    try {
      const { carried, dropped } = await this.metrics.carry();
      if (dropped.length > 0) this.log.warn('metrics too large to carry across the restart: these start again from zero', { metrics: dropped });
      return carried;
    } catch (err) {
      this.log.warn('could not carry the metrics across the restart: they start again from zero', { reason: (err as Error).message });
      return [];
    }
  }

  private async closeAll(reason: string): Promise<void> {
    this.watchdog.stop();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const watcher = this.watcher;
    this.watcher = undefined;
    await watcher?.close().catch(() => undefined);
    this.groupsAtClose = this.hostApps?.groups() ?? {};
    await this.hostApps?.close(reason);
    // Closing the connection flushes the acks sent on its channels.
    await this.connection.close(reason);
    await Connection.closeAll(reason);
    // Last: until here a probe hears `restarting` / `stopping` (503), not a refused connection.
    this.metrics?.close();
    await this.server?.close();
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
    const usage = this.usage.now();
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
      broker: { url: this.connection.displayUrl, state: this.connection.state, blocked: this.connection.blocked, connections: this.connection.generation },
      eventLoop: this.watchdog.status(),
      applications: this.hostApps?.status() ?? [],
    };
  }
}
