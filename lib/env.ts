/**
 * Reads the `POSTAGE_*` environment variables, the way Python Postage did, plus the
 * broker's address. The deprecated names are still honoured, with a warning.
 */

/** Broker settings and debug switch taken from the environment. */
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
  { name: 'POSTAGE_HOST', default: '127.0.0.1', doc: 'broker host, or a comma-separated list to fail over' },
  { name: 'POSTAGE_PORT', default: '5672', doc: 'broker port' },
  { name: 'POSTAGE_URL', default: '', doc: 'full amqp:// URL (or a comma-separated list); wins over the above' },
  { name: 'POSTAGE_DEBUG_MODE', default: 'false', doc: '"true" traces every message sent and received' },
  { name: 'POSTAGE_RMQ_USER', default: '', doc: 'deprecated alias of POSTAGE_USER' },
  { name: 'POSTAGE_RMQ_PASSWORD', default: '', doc: 'deprecated alias of POSTAGE_PASSWORD' },
];

/** Reads the settings from `env` (default `process.env`) without touching anything else. */
export function readEnv(env: NodeJS.ProcessEnv = process.env): EnvSettings {
  const warnings: string[] = [];
  let user = env['POSTAGE_USER'];
  if (user === undefined && env['POSTAGE_RMQ_USER'] !== undefined) {
    user = env['POSTAGE_RMQ_USER'];
    warnings.push('POSTAGE_RMQ_USER is deprecated: use POSTAGE_USER');
  }
  let password = env['POSTAGE_PASSWORD'];
  if (password === undefined && env['POSTAGE_RMQ_PASSWORD'] !== undefined) {
    password = env['POSTAGE_RMQ_PASSWORD'];
    warnings.push('POSTAGE_RMQ_PASSWORD is deprecated: use POSTAGE_PASSWORD');
  }
  const port = Number(env['POSTAGE_PORT'] ?? 5672);
  return {
    vhost: env['POSTAGE_VHOST'] ?? '/',
    user: user ?? 'guest',
    password: password ?? 'guest',
    hosts: splitList(env['POSTAGE_HOST'] ?? '127.0.0.1'),
    port: Number.isInteger(port) && port > 0 ? port : 5672,
    urls: splitList(env['POSTAGE_URL'] ?? ''),
    debug: (env['POSTAGE_DEBUG_MODE'] ?? '').toLowerCase() === 'true',
    warnings,
  };
}

function splitList(value: string): string[] {
  return value.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
}
