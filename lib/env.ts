import { readFileSync } from 'node:fs';
import os from 'node:os';

/**
 * Reads the `POSTAGE_*` environment variables, the way Python Postage did, plus the
 * broker's address. This is the only place the library reads the environment; the
 * deprecated names are still honoured, with a warning.
 */

/** Broker settings taken from the environment: only the variables that are set. */
export interface EnvBrokerSettings {
  url?: string[];
  hosts?: string[];
  port?: number;
  vhost?: string;
  user?: string;
  password?: string;
  /** From POSTAGE_TLS (`true` turns the hosts form to amqps) and POSTAGE_TLS_CA / _CERT / _KEY / _SERVERNAME / _EXTERNAL. */
  tls?: { enabled: boolean; ca?: string[]; cert?: string; key?: string; servername?: string; external?: boolean };
}

/** Broker settings and debug switch taken from the environment, with defaults filled in. */
export interface EnvSettings {
  vhost: string;
  user: string;
  password: string;
  /** One or more broker hosts (comma separated in `POSTAGE_HOST`). */
  hosts: string[];
  port: number;
  /** A full AMQP URL, or several separated by commas (`POSTAGE_URL`); wins over host/port/user. */
  urls: string[];
  /** `POSTAGE_DEBUG_MODE=true`: verbose wire tracing. */
  debug: boolean;
  /** Warnings about deprecated variables that were used. */
  warnings: string[];
}

/** The variables this library reads, with their defaults, for documentation and `--help`. */
export const ENV_VARIABLES: ReadonlyArray<{ name: string; default: string; doc: string }> = [
  { name: 'POSTAGE_VHOST', default: '/', doc: 'RabbitMQ virtual host' },
  { name: 'POSTAGE_USER', default: 'guest', doc: 'broker user' },
  { name: 'POSTAGE_PASSWORD', default: 'guest', doc: 'broker password (never printed)' },
  { name: 'POSTAGE_HOST', default: '127.0.0.1', doc: 'broker host (host, host:port, [v6]:port), or a comma-separated list to fail over' },
  { name: 'POSTAGE_PORT', default: '5672', doc: 'broker port' },
  { name: 'POSTAGE_URL', default: '', doc: 'full amqp:// URL (or a comma-separated list); wins over the above' },
  { name: 'POSTAGE_TLS', default: 'false', doc: '"true": TLS (amqps) to the hosts of POSTAGE_HOST; an amqps:// URL uses TLS anyway' },
  { name: 'POSTAGE_TLS_CA', default: '', doc: "CA certificate file(s) (PEM, comma-separated) the broker's certificate must chain to" },
  { name: 'POSTAGE_TLS_CERT', default: '', doc: 'client certificate file (PEM)' },
  { name: 'POSTAGE_TLS_KEY', default: '', doc: "client certificate's key file (PEM)" },
  { name: 'POSTAGE_TLS_SERVERNAME', default: '', doc: "name the broker's certificate must carry (default: the host)" },
  { name: 'POSTAGE_TLS_EXTERNAL', default: 'false', doc: '"true": authenticate with the client certificate (SASL EXTERNAL)' },
  { name: 'POSTAGE_DEBUG_MODE', default: 'false', doc: '"true" traces every message sent and received' },
  { name: 'POSTAGE_HOSTNAME', default: '(the OS host name)', doc: 'host name used in fingerprints and addresses (@H, N@H, P@H)' },
  { name: 'POSTAGE_SIGNING_KEY_FILE', default: '', doc: 'file of secrets (one per line, the first signs) for signed control commands (never printed)' },
  { name: 'POSTAGE_SIGNING_KEY', default: '', doc: 'a secret for signed control commands, when there is no key file (never printed)' },
  { name: 'POSTAGE_RMQ_USER', default: '', doc: 'deprecated alias of POSTAGE_USER' },
  { name: 'POSTAGE_RMQ_PASSWORD', default: '', doc: 'deprecated alias of POSTAGE_PASSWORD' },
];

/** The defaults of every broker field (Python Postage's). */
export const BROKER_DEFAULTS = { hosts: ['127.0.0.1'], port: 5672, vhost: '/', user: 'guest', password: 'guest' } as const;

function set(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v === '' ? undefined : v;
}

/**
 * The broker fields the environment sets, and nothing else, so that a caller asks the
 * environment only for the fields it was not given. `POSTAGE_RMQ_USER` and
 * `POSTAGE_RMQ_PASSWORD` count (with a warning) only when the current names are unset.
 */
export function brokerEnv(env: NodeJS.ProcessEnv = process.env): { settings: EnvBrokerSettings; warnings: string[] } {
  const warnings: string[] = [];
  const settings: EnvBrokerSettings = {};
  const url = set(env, 'POSTAGE_URL');
  if (url !== undefined) settings.url = splitList(url);
  const host = set(env, 'POSTAGE_HOST');
  if (host !== undefined) settings.hosts = splitList(host);
  const port = set(env, 'POSTAGE_PORT');
  if (port !== undefined) settings.port = Number(port);
  const vhost = set(env, 'POSTAGE_VHOST');
  if (vhost !== undefined) settings.vhost = vhost;
  for (const [field, current, old] of [
    ['user', 'POSTAGE_USER', 'POSTAGE_RMQ_USER'],
    ['password', 'POSTAGE_PASSWORD', 'POSTAGE_RMQ_PASSWORD'],
  ] as const) {
    const value = set(env, current);
    const deprecated = set(env, old);
    if (value !== undefined) settings[field] = value;
    else if (deprecated !== undefined) {
      settings[field] = deprecated;
      warnings.push(`${old} is deprecated: use ${current}`);
    }
  }
  const tlsOn = (set(env, 'POSTAGE_TLS') ?? '').toLowerCase() === 'true';
  const ca = set(env, 'POSTAGE_TLS_CA');
  const cert = set(env, 'POSTAGE_TLS_CERT');
  const key = set(env, 'POSTAGE_TLS_KEY');
  const servername = set(env, 'POSTAGE_TLS_SERVERNAME');
  const external = (set(env, 'POSTAGE_TLS_EXTERNAL') ?? '').toLowerCase() === 'true';
  if (tlsOn || ca || cert || key || servername || external) {
    settings.tls = {
      enabled: tlsOn,
      ...(ca ? { ca: splitList(ca) } : {}),
      ...(cert ? { cert } : {}),
      ...(key ? { key } : {}),
      ...(servername ? { servername } : {}),
      ...(external ? { external } : {}),
    };
  }
  return { settings, warnings };
}

/** Reads the settings from `env` (default `process.env`), defaults filled in, without touching anything else. */
export function readEnv(env: NodeJS.ProcessEnv = process.env): EnvSettings {
  const { settings, warnings } = brokerEnv(env);
  const port = settings.port ?? BROKER_DEFAULTS.port;
  return {
    vhost: settings.vhost ?? BROKER_DEFAULTS.vhost,
    user: settings.user ?? BROKER_DEFAULTS.user,
    password: settings.password ?? BROKER_DEFAULTS.password,
    hosts: settings.hosts ?? [...BROKER_DEFAULTS.hosts],
    port: Number.isInteger(port) && port > 0 ? port : BROKER_DEFAULTS.port,
    urls: settings.url ?? [],
    debug: debugMode(env),
    warnings,
  };
}

/** `POSTAGE_DEBUG_MODE=true` (any case). */
export function debugMode(env: NodeJS.ProcessEnv = process.env): boolean {
  return (env['POSTAGE_DEBUG_MODE'] ?? '').toLowerCase() === 'true';
}

/** Splits a comma-separated list, trimming and dropping empty items. */
export function splitList(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** The host name this process claims in fingerprints and addresses: `POSTAGE_HOSTNAME`, else the OS's. */
export function localHostname(env: NodeJS.ProcessEnv = process.env): string {
  return set(env, 'POSTAGE_HOSTNAME') ?? os.hostname();
}

/** `POSTAGE_VHOST`, else `/`: the vhost a fingerprint reports when nobody says which. */
export function defaultVhost(env: NodeJS.ProcessEnv = process.env): string {
  return set(env, 'POSTAGE_VHOST') ?? BROKER_DEFAULTS.vhost;
}

/** `LOGNAME` or `USER`, as Python's getpass reads them: the user name when the OS has no passwd entry. */
export function loginName(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return set(env, 'LOGNAME') ?? set(env, 'USER');
}

/**
 * The secrets for signed control commands: `POSTAGE_SIGNING_KEY_FILE` (one per line; the first
 * signs, every one verifies; `#` comments and blank lines ignored), else `POSTAGE_SIGNING_KEY`.
 * `undefined` when neither is set. Throws when the file cannot be read or holds no secret.
 */
export function signingEnv(env: NodeJS.ProcessEnv = process.env): string[] | undefined {
  const file = set(env, 'POSTAGE_SIGNING_KEY_FILE');
  if (file !== undefined) return readSigningKeys(file);
  const key = set(env, 'POSTAGE_SIGNING_KEY');
  return key === undefined ? undefined : [key];
}

/** The secrets of a key file (see signingEnv). */
export function readSigningKeys(file: string): string[] {
  const keys = readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  if (keys.length === 0) throw new Error(`the signing key file ${file} holds no secret`);
  return keys;
}
