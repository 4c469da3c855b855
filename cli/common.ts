/**
 * What every command shares: the broker and timeout options, the help footer, opening and
 * closing the session, and turning a set of replies into an exit code.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import type { BrokerSettings, MessageResult } from 'postage';
import { readSigningKeys, signingEnv } from 'postage/internal';
import { envLayer, fileLayer, fileSigningKeyFile, flagsOverride, mergeLayers } from './broker-settings.js';
import { CliError, EXIT_CODES_HELP, ExitCode, type ExitCodeValue } from './exit-codes.js';
import { KEY_FORMS_HELP } from './keys.js';
import { showFailure, responder, type Output } from './output.js';
import { Session } from './session.js';

/** Options every command accepts. */
export interface BrokerOptions {
  config?: string;
  host?: string;
  vhost?: string;
  json?: boolean;
}

/** Options of the commands that wait for replies. */
export interface ReplyOptions extends BrokerOptions {
  timeout: number;
  expect?: number;
}

export function positiveSeconds(value: string): number {
  const n = Number(value);
  if (!(n > 0) || !Number.isFinite(n)) throw new InvalidArgumentError('must be a number of seconds > 0');
  return n;
}

export function positiveInteger(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a whole number >= 1');
  return n;
}

/** Adds `--config`, `--host`, `--vhost` and `--json`. */
export function brokerOptions(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', "read the broker section of a postaged config file (JSON)")
    .option('--host <host[:port]>', 'broker host (a comma-separated list fails over); overrides POSTAGE_HOST / the URL host')
    .option('--vhost <vhost>', 'RabbitMQ virtual host; overrides POSTAGE_VHOST / the URL path')
    .option('--json', 'print JSON for scripts instead of text');
}

/** Adds `--timeout` (seconds) with this command's default, and `--expect`. */
export function replyOptions(cmd: Command, defaultTimeout: number): Command {
  return cmd
    .addOption(new Option('-t, --timeout <seconds>', 'how long to collect replies').argParser(positiveSeconds).default(defaultTimeout))
    .addOption(new Option('-e, --expect <n>', 'return as soon as n replies are in (fewer within the timeout: exit 3)').argParser(positiveInteger));
}

/** The text after a command's option list: examples, keys, environment, exit codes. */
export function helpFooter(examples: readonly string[], withKeys = true): string {
  const env = `Broker (lowest to highest precedence): defaults, --config FILE, the environment
  POSTAGE_URL (amqp:// URL, comma-separated to fail over; wins over the next ones),
  POSTAGE_HOST, POSTAGE_PORT, POSTAGE_VHOST, POSTAGE_USER, POSTAGE_PASSWORD; then --host, --vhost.`;
  return ['', 'Examples:', ...examples.map((e) => `  $ ${e}`), '', ...(withKeys ? [KEY_FORMS_HELP, ''] : []), env, '', EXIT_CODES_HELP].join('\n');
}

/**
 * The broker settings for these options: file < environment, merged; `--host`/`--vhost` as an
 * override; the signing secrets (environment, else the config file's security.signingKeyFile).
 */
export async function brokerFor(options: BrokerOptions): Promise<{ settings: BrokerSettings; override: ReturnType<typeof flagsOverride>; signing: string[] | undefined }> {
  const layers: BrokerSettings[] = [];
  if (options.config !== undefined) layers.push(await fileLayer(options.config));
  let signing: string[] | undefined;
  try {
    const keyFile = options.config !== undefined ? await fileSigningKeyFile(options.config) : undefined;
    signing = signingEnv() ?? (keyFile ? readSigningKeys(keyFile) : undefined);
  } catch (err) {
    throw new CliError(ExitCode.CONFIG, `signing key: ${(err as Error).message}`);
  }
  // Deprecated variables (POSTAGE_RMQ_*) are warned about here, once: the library is told
  // not to read the environment again.
  const env = envLayer();
  for (const w of env.warnings) process.emitWarning(w, { type: 'DeprecationWarning', code: 'POSTAGE_DEP_ENV' });
  layers.push(env.layer);
  return { settings: mergeLayers(layers), override: flagsOverride(options), signing };
}

/** Opens a session, runs `fn`, and always closes the connection. */
export async function withSession<T>(options: BrokerOptions, fn: (session: Session) => Promise<T>): Promise<T> {
  const { settings, override, signing } = await brokerFor(options);
  const session = new Session(settings, override, signing);
  try {
    await session.open();
    return await fn(session);
  } finally {
    await session.close();
  }
}

/**
 * The exit code of a set of replies: 3 when none came (or fewer than `expect`), 1 when one
 * is an error or exception, else 0. Explains itself on stderr.
 */
export function repliesExitCode(replies: readonly MessageResult[], what: string, options: ReplyOptions, output: Output): ExitCodeValue {
  for (const r of replies) if (!r.ok) output.err(`postage: ${responder(r)}: ${showFailure(r)}\n`);
  if (replies.length === 0) {
    output.err(`postage: no reply to ${what} within ${options.timeout} s\n`);
    return ExitCode.NO_REPLY;
  }
  if (replies.some((r) => !r.ok)) return ExitCode.ERROR;
  if (options.expect !== undefined && replies.length < options.expect) {
    output.err(`postage: only ${replies.length} of ${options.expect} expected replies to ${what} within ${options.timeout} s\n`);
    return ExitCode.NO_REPLY;
  }
  return ExitCode.OK;
}
