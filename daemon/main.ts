/**
 * `postaged`: the process around the daemon. Owns argv, signals, exit codes and re-exec;
 * nothing else in the project touches the process.
 *
 * Exit codes: 0 stopped cleanly (quit, SIGTERM, SIGINT); 1 forced (second signal, watchdog)
 * or failed; 69 broker unreachable at start; 78 configuration error (command line, file,
 * environment). systemd's `RestartPreventExitStatus=78` keeps a bad config from looping.
 *
 * Plugin code runs in this process: its uncaught exceptions, unhandled rejections and calls
 * to `process.exit()` are turned into faults the daemon handles (daemon/faults.ts) instead of
 * ending every application at once.
 */
import fs from 'node:fs';
import { parseCommandLine, helpText } from './argv.js';
import { ConfigError, loadConfig, redactConfig, secretsOf, type LoadedConfig } from './config.js';
import { exposedSecretFile } from './secrets.js';
import { Daemon, type Outcome } from './daemon.js';
import { createLogger, flushLogs } from './logger.js';
import { checkExecMechanism, execMechanism, reExec } from './re-exec.js';
import { RestartState, STATE_ENV } from './restart-state.js';
import { SystemdNotifier } from './sd-notify.js';
import { prepareTranspileCache } from './transpile-cache.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_UNAVAILABLE = 69;
export const EXIT_CONFIG = 78;

function version(): string {
  const file = new URL(import.meta.resolve('postage/package.json'));
  return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version;
}

/** The real `process.exit`: plugins get a guarded one (see main). */
const realExit = process.exit.bind(process) as (code?: number) => never;
let exiting = false;

/** How the daemon itself ends the process. */
function exit(code: number): never {
  exiting = true;
  return realExit(code);
}

function configError(err: ConfigError): never {
  process.stderr.write(`postaged: configuration error (exit ${EXIT_CONFIG}): ${err.message}\n`);
  exit(EXIT_CONFIG);
}

function load(argv: readonly string[], env: NodeJS.ProcessEnv): { loaded: LoadedConfig; printConfig: boolean } {
  const line = parseCommandLine(argv);
  if (line.help) {
    process.stdout.write(helpText(version()));
    exit(EXIT_OK);
  }
  if (line.version) {
    process.stdout.write(`${version()}\n`);
    exit(EXIT_OK);
  }
  const loaded = loadConfig({ configFile: line.configFile ?? env['POSTAGED_CONFIG'], argv: line.overrides, env });
  return { loaded, printConfig: line.printConfig };
}

/**
 * Runs the daemon until it exits or re-execs. `earlySignals`: signals bin/postaged caught
 * before this module was loaded (a SIGTERM during a re-exec lands in the new process image
 * early: it must stop it, not be lost).
 */
export async function main(argv: readonly string[] = process.argv.slice(2), env: NodeJS.ProcessEnv = process.env, earlySignals: readonly NodeJS.Signals[] = []): Promise<void> {
  let daemon: Daemon | undefined;
  let stopSignals = 0;
  // Installed before anything else: as PID 1 (a container) an unhandled SIGTERM is ignored.
  const onSignal = (signal: NodeJS.Signals): void => {
    // SIGHUP is "reload" (a graceful in-place restart, systemd's ExecReload) for a service; on a
    // terminal it means the terminal went away, and the daemon stops instead of re-exec'ing into it.
    if (signal === 'SIGHUP' && !process.stdout.isTTY) {
      void daemon?.restart('SIGHUP');
      return;
    }
    stopSignals++;
    if (!daemon) exit(EXIT_OK); // nothing opened yet
    if (stopSignals > 1) {
      process.stderr.write(`postaged: second signal (${signal}): forcing exit; still open: ${daemon.openResources().join('; ') || 'nothing'}\n`);
      exit(EXIT_FAILURE);
    }
    void daemon.stop(signal, 'shutdown');
  };
  for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(s, onSignal);
  for (const s of earlySignals) onSignal(s);

  let loaded: LoadedConfig;
  let printConfig: boolean;
  try {
    ({ loaded, printConfig } = load(argv, env));
  } catch (err) {
    if (err instanceof ConfigError) configError(err);
    throw err;
  }
  const { config } = loaded;
  if (printConfig) {
    const { config: shown, redacted } = redactConfig(config);
    process.stdout.write(`${JSON.stringify(shown, null, 2)}\n`);
    if (redacted.length > 0) process.stderr.write(`postaged: --print-config: secrets replaced by ***: ${redacted.join(', ')}\n`);
    exit(EXIT_OK);
  }
  try {
    if (!fs.statSync(config.pluginDir).isDirectory()) throw new Error('not a folder');
  } catch (err) {
    configError(new ConfigError('pluginDir', `pluginDir: plugin folder ${JSON.stringify(config.pluginDir)} cannot be used (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`));
  }

  const state = RestartState.fromEnv(env[STATE_ENV], config.restart.dedupeWindow);
  delete env[STATE_ENV]; // not for the plugins' child processes; set again before an exec
  const logger = createLogger({ level: config.log.level, format: config.log.format, secrets: secretsOf(config), ...(config.host ? { host: config.host } : {}) });
  const log = logger.child({ app: config.name });
  for (const w of loaded.warnings) log.warn(w);
  // A file holding secrets that other users can read is worth saying, once, at start.
  for (const [file, holds] of [
    [loaded.configFile, loaded.sources['broker.password'] === 'file' || (loaded.sources['broker.url'] === 'file' && config.broker.url.some((u) => /:\/\/[^/@]*:[^/@]*@/.test(u)))],
    [config.security.signingKeyFile || null, true],
  ] as const) {
    const exposed = file && holds ? exposedSecretFile(file) : undefined;
    if (exposed) log.warn(exposed);
  }
  const shadowed = ['broker.hosts', 'broker.port', 'broker.vhost', 'broker.user', 'broker.password'].filter((k) => loaded.sources[k] !== 'default');
  if (config.broker.url.length > 0 && shadowed.length > 0) log.warn('broker.url is set: it wins over these keys, which are ignored', { keys: shadowed });
  if (state.problem) log.warn(state.problem);
  // Restart in place is this daemon's way of applying new code and of surviving faults: a
  // mechanism that cannot work is reported now, not at the first restart.
  const noExec = checkExecMechanism();
  if (noExec) {
    log.error('cannot restart in place: refusing to start', { reason: noExec, mechanism: execMechanism() });
    await flushLogs();
    exit(EXIT_FAILURE);
  }
  // Under systemd (Type=notify): readiness by phase, and WatchdogSec= pinged from the event loop.
  const notifier = SystemdNotifier.fromEnv(env, log);
  notifier?.startWatchdog();
  process.setSourceMapsEnabled(true); // plugin stack traces point at their .ts lines
  process.on('unhandledRejection', (reason) => {
    // A plugin's forgotten promise must not take every other plugin down with it.
    if (daemon) daemon.fault('unhandled rejection', reason, false);
    else log.error('unhandled promise rejection', { reason: reason instanceof Error ? reason.stack : String(reason) });
  });
  process.on('uncaughtException', (err) => {
    if (daemon) return daemon.fault('uncaught exception', err, true);
    log.error('uncaught exception: exiting', { reason: err.stack ?? String(err) });
    void flushLogs().then(() => exit(EXIT_FAILURE));
  });
  // A plugin calling process.exit() would end every application at once: it is a fault like
  // an uncaught exception instead (its stack says whose).
  process.exit = ((code?: number | string | null) => {
    if (exiting || !daemon) return exit(typeof code === 'number' ? code : Number(code ?? 0) || 0);
    daemon.fault('process.exit()', new Error(`process.exit(${String(code ?? '')}) was called`), true);
    return undefined as never;
  }) as typeof process.exit;

  const finish = (outcome: Outcome): void => {
    void (async () => {
      await flushLogs();
      if (outcome.kind === 'exit') exit(outcome.code);
      // A signal is caught by libuv at once but reaches `onSignal` only when the loop next
      // reads its signal pipe (the poll phase). One that came while the logs were flushed may
      // still be in that pipe, and would go with this image: the new one never hears of it
      // and runs on. Two turns of the loop: everything that arrived before the second turn's
      // poll is dispatched. (Fault #12 saw a SIGTERM sent as the re-exec was logged lost, 1
      // time in about 50 such trials, only while other suites loaded the machine; whether
      // this window was the cause is not established, and what is left between that poll
      // and the listeners' removal below cannot be closed from JavaScript.)
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
      // A stop signal that came after the restart's last look (while it carried the metrics
      // or flushed the logs) would be lost in the exec: the new image never hears of it and
      // runs on. It wins here, the last moment before the exec.
      if (stopSignals > 0) {
        log.info('a stop was requested during the restart: exiting instead of re-exec');
        await flushLogs();
        exit(EXIT_OK);
      }
      // From here to the exec a stop signal can no longer be acted on (the loop does not turn
      // again): by its default action it ends the process, as it does in the exec window
      // itself, instead of being caught and lost (the next generation would run on).
      for (const s of ['SIGTERM', 'SIGINT'] as const) process.removeAllListeners(s);
      env[STATE_ENV] = outcome.state;
      notifier?.ping();
      try {
        exiting = true;
        reExec();
      } catch (err) {
        log.error('re-exec failed: exiting', { reason: (err as Error).message, mechanism: execMechanism() });
        await flushLogs();
        exit(EXIT_FAILURE);
      }
    })();
  };

  const transpileCache = prepareTranspileCache(env);
  if (transpileCache.problem) log.warn('transpiled .ts plugins are not cached: each generation transpiles them again', { reason: transpileCache.problem });
  daemon = new Daemon({ config, logger, state, version: version(), finish, ...(transpileCache.dir ? { transpileCacheDir: transpileCache.dir } : {}), ...(notifier ? { onPhase: (phase, detail) => notifier.phase(phase, detail) } : {}) });
  log.info('postaged starting', {
    version: version(),
    generation: state.generation,
    configFile: loaded.configFile,
    pluginDir: daemon.pluginDir,
    broker: config.broker.url.length > 0 ? '(url)' : `${config.broker.hosts.join(',')}:${config.broker.port}`,
    vhost: config.broker.url.length > 0 ? undefined : config.broker.vhost,
    node: process.version,
    exec: execMechanism(),
  });
  try {
    await daemon.start();
  } catch (err) {
    if (daemon.phase !== 'starting') return; // a stop or restart interrupted the start
    const code = err instanceof ConfigError ? EXIT_CONFIG : (err as { code?: string }).code === 'POSTAGE_ERR_BROKER_UNREACHABLE' ? EXIT_UNAVAILABLE : EXIT_FAILURE;
    log.error('postaged could not start', { reason: (err as Error).message, exitCode: code });
    await flushLogs();
    if (err instanceof ConfigError) configError(err);
    exit(code);
  }
}
