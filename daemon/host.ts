/**
 * The host: runs applications (plugins and the daemon's own) on one MicroScheduler, over
 * one broker connection, one channel each, and tracks each one's state for `status`.
 * A plugin that fails (import, default export, constructor, create(), start timeout) is
 * recorded as `failed` with its reason; the others are never touched by it.
 */
import type { Connection, ApplicationOptions, GenericApplication, Logger } from 'postage';
import { MicroScheduler, type ApplicationStatus } from 'postage';
import type { AppConfig, DaemonConfig } from './config.js';
import { baseName, loadPlugin, type LoadedPlugin } from './plugin-loader.js';

export type AppState = 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

/** One application as `status` reports it (the wire type shared with the CLI). */
export type AppStatus = ApplicationStatus & { state: AppState };

interface AppRecord {
  name: string;
  file: string | null;
  state: AppState;
  error?: string;
  app?: GenericApplication;
}

/** A logger that can make children (winston's). */
export interface RootLogger extends Logger {
  child(meta: Record<string, unknown>): Logger;
}

export interface HostOptions {
  connection: Connection;
  logger: RootLogger;
  config: Readonly<DaemonConfig>;
  /** Host name used in addresses. */
  host: string;
}

const LIVE: ReadonlySet<AppState> = new Set(['starting', 'running', 'stopping']);

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

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
    const { config } = this.options;
    return {
      name,
      host: this.options.host,
      connection: this.options.connection,
      logger: this.options.logger.child({ app: name }),
      prefetch: appConfig.prefetch ?? config.defaults.prefetch,
      concurrency: appConfig.concurrency ?? config.defaults.concurrency,
      drainTimeout: config.drainTimeout,
      topology: { ...config.topology },
      settings: { ...(appConfig.settings ?? {}) },
      ...(appConfig.groups ? { groups: [...appConfig.groups] } : {}),
    };
  }

  /** Starts an application already constructed (the daemon's own); resolves once running or failed. */
  async run(app: GenericApplication, file: string | null): Promise<AppState> {
    const record: AppRecord = { name: app.name, file, state: 'starting', app };
    this.records.push(record);
    await this.schedule(record, app);
    return record.state;
  }

  /**
   * Loads plugin files (in parallel), claims their names in the order given (the first file
   * with a name keeps it), then starts them all. Resolves when each is running or failed.
   */
  async addPlugins(files: readonly string[]): Promise<void> {
    if (this.closing) return;
    const loaded = await Promise.all(files.map((f) => loadPlugin(f, { timeout: this.options.config.startTimeout })));
    const starts: Array<Promise<void>> = [];
    for (const plugin of loaded) {
      const started = this.admit(plugin);
      if (started) starts.push(started);
    }
    await Promise.all(starts);
  }

  /** Records a loaded plugin and starts it, or records why it cannot run. */
  private admit(plugin: LoadedPlugin): Promise<void> | undefined {
    if (this.closing) return undefined;
    const previous = this.records.findIndex((r) => r.file === plugin.file);
    if (previous >= 0) {
      if (LIVE.has(this.records[previous]!.state)) {
        this.log.warn('plugin already running: not loaded twice', { file: plugin.file, plugin: plugin.name });
        return undefined;
      }
      this.records.splice(previous, 1);
    }
    const fail = (error: string): undefined => {
      this.records.push({ name: plugin.name, file: plugin.file, state: 'failed', error });
      this.options.logger.child({ app: plugin.name }).error('plugin failed to load', { file: plugin.file, reason: error });
      return undefined;
    };
    if (!plugin.ok) return fail(plugin.reason);
    const holder = this.records.find((r) => r.name === plugin.name && LIVE.has(r.state));
    if (holder) {
      return fail(`duplicate application name "${plugin.name}": already used by ${holder.file ?? 'the daemon itself'}; this plugin was not started (the first one is kept)`);
    }
    const appConfig = this.options.config.apps[plugin.name] ?? this.options.config.apps[baseName(plugin.file)] ?? {};
    if (appConfig.enabled === false) {
      this.records.push({ name: plugin.name, file: plugin.file, state: 'stopped' });
      this.options.logger.child({ app: plugin.name }).info('plugin disabled by configuration: not started', { file: plugin.file });
      return undefined;
    }
    if (plugin.warning) this.options.logger.child({ app: plugin.name }).warn(plugin.warning, { file: plugin.file });
    let app: GenericApplication;
    try {
      app = new plugin.appClass(this.appOptions(plugin.name, appConfig));
    } catch (err) {
      return fail(`constructor threw: ${message(err)}`);
    }
    const record: AppRecord = { name: plugin.name, file: plugin.file, state: 'starting', app };
    this.records.push(record);
    return this.schedule(record, app);
  }

  /**
   * Adds `app` to the scheduler with its create() bounded by `startTimeout`: a failing or
   * hung create() marks the application failed (naming it) and closes what it opened.
   */
  private schedule(record: AppRecord, app: GenericApplication): Promise<void> {
    const timeout = this.options.config.startTimeout;
    const log = this.options.logger.child({ app: record.name });
    return new Promise<void>((started) => {
      const create = app.create.bind(app);
      app.create = async (): Promise<void> => {
        let timer: NodeJS.Timeout | undefined;
        const expired = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`create() did not finish within ${timeout} ms`)), timeout);
        });
        try {
          await Promise.race([create(), expired]);
          if (record.state === 'starting') {
            record.state = 'running';
            log.info('application started', { file: record.file, queues: app.queues, groups: app.groups });
          }
        } catch (err) {
          record.state = 'failed';
          record.error = `create() failed: ${message(err)}`;
          log.error('application failed to start', { file: record.file, reason: record.error });
          app.stop();
          void app.close('failed').catch(() => undefined);
        } finally {
          clearTimeout(timer);
          started();
        }
      };
      app.events.on('stopped', (event: { reason: string }) => {
        if (record.state !== 'failed') record.state = 'stopped';
        log.info('application stopped', { reason: event.reason });
      });
      this.scheduler.add(app);
    });
  }

  /** Whether a plugin file has a live application. */
  isLive(file: string): boolean {
    return this.records.some((r) => r.file === file && LIVE.has(r.state));
  }

  /** Whether the host knows this file at all (live, stopped or failed). */
  knows(file: string): boolean {
    return this.records.some((r) => r.file === file);
  }

  /** Stops the application of a removed plugin file (its own queue goes, as on `quit`). */
  async removePlugin(file: string): Promise<void> {
    const record = this.records.find((r) => r.file === file && LIVE.has(r.state));
    const i = this.records.findIndex((r) => r.file === file);
    if (!record?.app) {
      if (i >= 0) this.records.splice(i, 1);
      return;
    }
    this.options.logger.child({ app: record.name }).info('plugin file removed: stopping its application', { file });
    await record.app.close('quit');
    this.records.splice(this.records.indexOf(record), 1);
  }

  /** Every application, as `status` shows it. */
  status(): AppStatus[] {
    return this.records.map((r) => {
      let state = r.state;
      if (state === 'running' && r.app?.state === 'stopping') state = 'stopping';
      if (state !== 'failed' && r.app?.state === 'stopped') state = 'stopped';
      const s = r.app?.stats;
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
        },
        ...(state === 'failed' ? { error: r.error ?? 'failed' } : {}),
      };
    });
  }

  /**
   * Closes every application: the plugins together (each cancels its consumer, drains its
   * in-flight handlers within drainTimeout, then closes its channel), then the daemon's own
   * application, which started first. `quit` deletes each unique queue; other reasons
   * (`restart`, `shutdown`) leave it to the next generation or to its expiry.
   */
  close(reason: string): Promise<void> {
    this.closing ??= (async () => {
      const live = this.records.filter((r) => r.app && LIVE.has(r.state));
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
      .filter((r) => r.app && r.app.state !== 'stopped' && r.state !== 'failed')
      .map((r) => `${r.name} (${r.app!.state}, ${r.app!.inFlightCount} handler(s) in flight)`);
  }
}
