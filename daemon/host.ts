/**
 * The host: runs applications (plugins and the daemon's own) on one MicroScheduler, over
 * one broker connection, one channel each, and reports each one's state for `status`. The
 * state is the application's own (MessageProcessor.state); the host adds only what the
 * application cannot know: a plugin that failed to load, is disabled, or was stopped by
 * `quit` in an earlier generation. Control commands reach the daemon as the applications'
 * `control` events.
 */
import type { ApplicationOptions, ApplicationStatus, Connection, ControlEvent, GenericApplication, Logger } from 'postage';
import { MicroScheduler, PostageError } from 'postage';
import type { AppConfig, DaemonConfig } from './config.js';
import { baseName, loadPlugin, type LoadedPlugin } from './plugin-loader.js';
import type { RestartState } from './restart-state.js';

export type AppState = 'starting' | 'running' | 'recovering' | 'stopping' | 'stopped' | 'failed' | 'quarantined';

/** One application as `status` reports it (the wire type shared with the CLI). */
export type AppStatus = ApplicationStatus & { state: AppState };

interface AppRecord {
  name: string;
  file: string | null;
  app?: GenericApplication;
  /** Why it could not run (load, constructor, start): the application is `failed`. */
  error?: string;
  /** What its start threw, when that is why it failed. */
  cause?: unknown;
  /** Why it does not run although nothing failed (disabled, quit in an earlier generation). */
  idle?: string;
  /** It kept crashing the daemon: not loaded until then (ms since the epoch). */
  quarantinedUntil?: number;
  /** A note about its file while it runs (a change that does not load). */
  pending?: string;
}

/** A logger that can make children (daemon/logger.ts). */
export interface RootLogger extends Logger {
  child(meta: Record<string, unknown>): Logger;
}

export interface HostOptions {
  connection: Connection;
  logger: RootLogger;
  config: Readonly<DaemonConfig>;
  state: RestartState;
  /** Host name used in addresses. */
  host: string;
  /** A `quit` or `restart` an application handled (after its ack). */
  onControl(app: GenericApplication, isDaemon: boolean, event: ControlEvent): void;
  /** Told of each application before it starts consuming, and of each plugin that cannot run (metrics). */
  observer?: HostObserver;
}

/** What the host tells about the applications it runs (daemon/metrics.ts listens). */
export interface HostObserver {
  /** An application is about to start (its processor exists, it consumes nothing yet). */
  starting(app: GenericApplication): void;
  /** A plugin could not be loaded, constructed or started. */
  failed(name: string): void;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * What to do about a queue refused for its flags (POSTAGE_ERR_TOPOLOGY): the setting that
 * makes this application declare the other flags, or the command that moves the queue.
 * `prefix` is where the application's topology settings live (`topology` or
 * `apps.<name>.topology`).
 */
export function topologyHint(err: unknown, prefix: string, app: GenericApplication): string {
  if (!(err instanceof PostageError) || err.code !== 'POSTAGE_ERR_TOPOLOGY') return '';
  const queue = String(err.details['queue']);
  const mode = app.topology.mode ?? 'durable';
  if (err.details['arg'] === 'x-queue-type') {
    const quorum = app.topology.quorum ?? false;
    return `. To declare it as the queue is, set ${prefix}.quorum to ${String(!quorum)}; to change the queue instead, stop what uses it and run: postage topology migrate '${queue}' --mode ${mode}${quorum ? ' --quorum' : ''} (docs/operations.md)`;
  }
  const other = mode === 'durable' ? 'postage' : 'durable';
  return `. To declare it as the queue is, set ${prefix}.mode to "${other}"; to change the queue instead, stop what uses it and run: postage topology migrate '${queue}' --mode ${mode} (docs/python-interop.md)`;
}

/** The state `status` shows for a record. */
function stateOf(r: AppRecord): AppState {
  if (r.quarantinedUntil !== undefined) return 'quarantined';
  if (r.error !== undefined) return 'failed';
  if (!r.app) return 'stopped';
  const s = r.app.state;
  return s === 'created' ? 'starting' : s;
}

const LIVE: ReadonlySet<AppState> = new Set(['starting', 'running', 'recovering', 'stopping']);

export class Host {
  readonly scheduler: MicroScheduler;
  private readonly records: AppRecord[] = [];
  private readonly log: Logger;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: HostOptions) {
    this.log = options.logger.child({ app: options.config.name });
    this.scheduler = new MicroScheduler({ autoquit: false, logger: this.log });
    // Resolves only after exit(); the daemon never awaits it (a hung create() would keep it pending).
    void this.scheduler.run();
  }

  /** Options every application gets, with the per-application ones from `apps.<name>`. */
  private appOptions(name: string, appConfig: AppConfig): ApplicationOptions {
    const { config, state } = this.options;
    const groups = state.groupsOf(name) ?? appConfig.groups;
    return {
      name,
      host: this.options.host,
      connection: this.options.connection,
      logger: this.options.logger.child({ app: name }),
      prefetch: appConfig.prefetch ?? config.defaults.prefetch,
      concurrency: appConfig.concurrency ?? config.defaults.concurrency,
      handlerTimeout: appConfig.handlerTimeout ?? config.defaults.handlerTimeout,
      maxAttempts: appConfig.maxAttempts ?? config.defaults.maxAttempts,
      maxDeliveries: appConfig.maxDeliveries ?? config.defaults.maxDeliveries,
      strictReplies: config.security.strictReplies,
      traceContext: config.tracing.enabled,
      drainTimeout: config.drainTimeout,
      topology: { ...config.topology, ...(appConfig.topology ?? {}) },
      settings: { ...(appConfig.settings ?? {}) },
      ...(groups ? { groups: [...groups] } : {}),
    };
  }

  /**
   * Starts an application already constructed (the daemon's own); resolves once running or
   * failed, with why it failed.
   */
  async run(app: GenericApplication, file: string | null): Promise<{ state: AppState; error?: string; cause?: unknown }> {
    const record: AppRecord = { name: app.name, file, app };
    this.records.push(record);
    await this.start(record, app, file === null);
    return { state: stateOf(record), ...(record.error !== undefined ? { error: record.error, cause: record.cause } : {}) };
  }

  /**
   * Loads plugin files (in parallel), claims their names in the order given (the first file
   * with a name keeps it), then starts them all. Resolves when each is running or failed.
   */
  async addPlugins(files: readonly string[], options: { revive?: boolean } = {}): Promise<void> {
    if (this.closing) return;
    const loaded = await Promise.all(files.map((f) => loadPlugin(f, { timeout: this.options.config.startTimeout, strictModes: this.options.config.strictModes })));
    const starts: Array<Promise<void>> = [];
    for (const plugin of loaded) {
      const started = this.admit(plugin, options.revive === true);
      if (started) starts.push(started);
    }
    await Promise.all(starts);
  }

  /** Records a loaded plugin and starts it, or records why it cannot run. */
  private admit(plugin: LoadedPlugin, revive: boolean): Promise<void> | undefined {
    if (this.closing) return undefined;
    const previous = this.records.findIndex((r) => r.file === plugin.file);
    if (previous >= 0) {
      if (LIVE.has(stateOf(this.records[previous]!))) {
        this.log.warn('plugin already running: not loaded twice', { file: plugin.file, plugin: plugin.name });
        return undefined;
      }
      this.records.splice(previous, 1);
    }
    const log = this.options.logger.child({ app: plugin.name });
    const fail = (error: string): undefined => {
      this.records.push({ name: plugin.name, file: plugin.file, error });
      this.options.observer?.failed(plugin.name);
      log.error('plugin failed to load', { file: plugin.file, reason: error });
      return undefined;
    };
    if (!plugin.ok) return fail(plugin.reason);
    const holder = this.records.find((r) => r.name === plugin.name && LIVE.has(stateOf(r)));
    if (holder) {
      return fail(`duplicate application name "${plugin.name}": already used by ${holder.file ?? 'the daemon itself'}; this plugin was not started (the first one is kept)`);
    }
    const appConfig = this.options.config.apps[plugin.name] ?? this.options.config.apps[baseName(plugin.file)] ?? {};
    if (appConfig.enabled === false) {
      this.records.push({ name: plugin.name, file: plugin.file, idle: 'disabled by configuration' });
      log.info('plugin disabled by configuration: not started', { file: plugin.file });
      return undefined;
    }
    // `quit` stops an application until its file changes: a restart does not bring it back;
    // a quarantine lasts its time, unless the file changes (a new version gets a fresh start).
    if (revive) {
      this.options.state.setQuit(plugin.name, false);
      this.options.state.liftQuarantine(plugin.file);
    }
    const quarantine = this.options.state.quarantineOf(plugin.file);
    if (quarantine) {
      const idle = `quarantined until ${new Date(quarantine.until).toISOString()}: ${quarantine.reason}`;
      this.records.push({ name: plugin.name, file: plugin.file, idle, quarantinedUntil: quarantine.until });
      log.warn('plugin in quarantine: not started', { file: plugin.file, until: new Date(quarantine.until).toISOString(), reason: quarantine.reason });
      return undefined;
    }
    if (this.options.state.isQuit(plugin.name)) {
      this.records.push({ name: plugin.name, file: plugin.file, idle: 'stopped by quit (change its file to start it again)' });
      log.info('application stopped by quit in an earlier generation: not started', { file: plugin.file });
      return undefined;
    }
    if (plugin.warning) log.warn(plugin.warning, { file: plugin.file });
    let app: GenericApplication;
    try {
      app = new plugin.appClass(this.appOptions(plugin.name, appConfig));
    } catch (err) {
      return fail(`constructor threw: ${message(err)}`);
    }
    const record: AppRecord = { name: plugin.name, file: plugin.file, app };
    this.records.push(record);
    return this.start(record, app, false);
  }

  /**
   * Schedules `app` and waits until it consumes, at most `startTimeout`: a failing or hung
   * start marks the application failed (naming it) and closes what it opened.
   */
  private async start(record: AppRecord, app: GenericApplication, isDaemon: boolean): Promise<void> {
    const timeout = this.options.config.startTimeout;
    const log = this.options.logger.child({ app: record.name });
    app.events.on('control', (event) => {
      if (event.kind === 'quit' && !isDaemon) this.options.state.setQuit(record.name, true);
      this.options.onControl(app, isDaemon, event);
    });
    app.events.on('stopped', (event) => log.info('application stopped', { reason: event.reason }));
    this.options.observer?.starting(app);
    this.scheduler.add(app);
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new PostageError('POSTAGE_ERR_TIMEOUT', `create() did not finish within ${timeout} ms`, { what: 'start', timeoutMs: timeout })), timeout);
    });
    try {
      await Promise.race([app.ready(), expired]);
      log.info('application started', { file: record.file, queues: app.queues, groups: app.groups });
    } catch (err) {
      record.error = `create() failed: ${message(err)}${topologyHint(err, isDaemon ? 'topology' : `apps.${record.name}.topology`, app)}`;
      record.cause = err;
      log.error('application failed to start', { file: record.file, reason: record.error });
      this.options.observer?.failed(record.name);
      app.stop();
      void app.close('failed').catch(() => undefined);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Notes (or forgets) something about a running plugin's file, shown in `status`. */
  setPending(file: string, note: string | undefined): void {
    const record = this.records.find((r) => r.file === file && r.app && LIVE.has(stateOf(r)));
    if (!record) return;
    if (note === undefined) delete record.pending;
    else record.pending = note;
  }

  /** The plugins in quarantine now, with the time each may be loaded again. */
  quarantined(): Array<{ file: string; until: number }> {
    return this.records.flatMap((r) => (r.quarantinedUntil !== undefined && r.file !== null ? [{ file: r.file, until: r.quarantinedUntil }] : []));
  }

  /** The application name of a plugin file, if the host knows it. */
  nameOf(file: string): string | undefined {
    return this.records.find((r) => r.file === file)?.name;
  }

  /** The applications running now. */
  applications(): GenericApplication[] {
    return this.records.flatMap((r) => (r.app && LIVE.has(stateOf(r)) ? [r.app] : []));
  }

  /** Whether a plugin file has a live application. */
  isLive(file: string): boolean {
    return this.records.some((r) => r.file === file && LIVE.has(stateOf(r)));
  }

  /** Stops the application of a removed plugin file (its own queue goes, as on `quit`). */
  async removePlugin(file: string): Promise<void> {
    const i = this.records.findIndex((r) => r.file === file);
    const record = this.records[i];
    if (!record) return;
    if (record.app && LIVE.has(stateOf(record))) {
      this.options.logger.child({ app: record.name }).info('plugin file removed: stopping its application', { file });
      await record.app.close('quit');
    }
    this.records.splice(this.records.indexOf(record), 1);
  }

  /** Every application, as `status` shows it. */
  status(): AppStatus[] {
    return this.records.map((r) => {
      const state = stateOf(r);
      const s = r.app?.stats;
      const reason = r.error ?? r.idle ?? r.app?.problem ?? r.pending;
      return {
        name: r.name,
        file: r.file,
        state,
        groups: r.app ? [...r.app.groups] : [],
        queues: r.app ? [...r.app.queues] : [],
        counts: {
          received: s?.received ?? 0,
          handled: s?.handled ?? 0,
          failed: s?.failed ?? 0,
          rejected: s?.rejected ?? 0,
          deadLettered: s?.deadLettered ?? 0,
          unhandled: s?.unhandled ?? 0,
          retried: s?.retried ?? 0,
          timedOut: s?.timedOut ?? 0,
          duplicates: s?.duplicates ?? 0,
        },
        invalid: { ...(s?.invalid ?? {}) },
        refused: { ...(s?.refused ?? {}) },
        ...(state === 'failed' ? { error: reason ?? 'failed' } : reason !== undefined ? { reason } : {}),
      };
    });
  }

  /** Groups of every running application now, for the next generation. */
  groups(): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const r of this.records) if (r.app && r.file !== null && LIVE.has(stateOf(r))) out[r.name] = [...r.app.groups];
    return out;
  }

  /**
   * Closes every application: the plugins together (each cancels its consumer, drains its
   * in-flight handlers within drainTimeout, then closes its channel), then the daemon's own
   * application, which started first. `quit` deletes each unique queue; other reasons
   * (`restart`, `shutdown`) leave it to the next generation or to its expiry.
   */
  close(reason: string): Promise<void> {
    this.closing ??= (async () => {
      const live = this.records.filter((r) => r.app && LIVE.has(stateOf(r)));
      const own = live.filter((r) => r.file === null);
      const plugins = live.filter((r) => r.file !== null);
      await Promise.all(plugins.map((r) => r.app!.close(reason).catch((err: unknown) => this.log.warn('application did not close cleanly', { application: r.name, reason: message(err) }))));
      await Promise.all(own.map((r) => r.app!.close(reason).catch(() => undefined)));
      this.scheduler.exit();
    })();
    return this.closing;
  }

  /** What is still open, for the shutdown watchdog. */
  openResources(): string[] {
    return this.records
      .filter((r) => r.app && LIVE.has(stateOf(r)))
      .map((r) => `${r.name} (${r.app!.state}, ${r.app!.inFlightCount} handler(s) in flight)`);
  }
}
