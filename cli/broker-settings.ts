/**
 * Where the broker is, read as `postaged` reads it (daemon/config.ts, `broker.*`):
 * defaults < `--config` file (its `broker` section) < `POSTAGE_*` environment, where a URL
 * (`broker.url`, `POSTAGE_URL`) wins over hosts/port/vhost/user/password. Then `--host` and
 * `--vhost` replace those parts of the URLs, so `POSTAGE_URL=… postage ps --vhost other`
 * asks the same broker about another vhost. The CLI may not import daemon/, so this file
 * repeats the few rules it needs.
 */
import { readFile } from 'node:fs/promises';
import { readEnv } from 'postage';
import stripJsonComments from 'strip-json-comments';
import { CliError, ExitCode } from './exit-codes.js';

/** One layer of broker settings; anything left out comes from the layers below. */
export interface BrokerLayer {
  urls?: string[];
  hosts?: string[];
  port?: number;
  vhost?: string;
  user?: string;
  password?: string;
}

const DEFAULTS: Required<Omit<BrokerLayer, 'urls'>> = { hosts: ['127.0.0.1'], port: 5672, vhost: '/', user: 'guest', password: 'guest' };

function list(value: unknown): string[] | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  const items = Array.isArray(value) ? value.map(String) : String(value).split(',');
  const out = items.map((s) => s.trim()).filter((s) => s.length > 0);
  return out.length > 0 ? out : undefined;
}

/** The environment layer: only the variables that are set. */
export function envLayer(env: NodeJS.ProcessEnv = process.env): { layer: BrokerLayer; warnings: string[] } {
  const read = readEnv(env);
  const has = (name: string): boolean => env[name] !== undefined && env[name] !== '';
  const layer: BrokerLayer = {};
  const urls = list(env['POSTAGE_URL']);
  if (urls) layer.urls = urls;
  const hosts = list(env['POSTAGE_HOST']);
  if (hosts) layer.hosts = hosts;
  if (has('POSTAGE_PORT')) layer.port = read.port;
  if (has('POSTAGE_VHOST')) layer.vhost = read.vhost;
  if (has('POSTAGE_USER') || has('POSTAGE_RMQ_USER')) layer.user = read.user;
  if (has('POSTAGE_PASSWORD') || has('POSTAGE_RMQ_PASSWORD')) layer.password = read.password;
  return { layer, warnings: read.warnings };
}

function configError(file: string, message: string): CliError {
  return new CliError(ExitCode.CONFIG, `invalid config file ${file}: ${message}`);
}

/**
 * The broker section of a `postaged` config file (JSON with comments). Keys of `broker`:
 * `url` (string or list), `hosts` (string or list; `host` accepted too), `port`, `vhost`,
 * `user`, `password`; `heartbeat` and `connectAttempts` are the daemon's (the CLI always
 * tries once). Other sections are the daemon's and are ignored here.
 */
export async function fileLayer(file: string): Promise<BrokerLayer> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new CliError(ExitCode.CONFIG, `cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(stripJsonComments(text));
  } catch (err) {
    throw configError(file, `not valid JSON (${(err as Error).message})`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw configError(file, 'the top level must be a JSON object');
  const broker = (doc as Record<string, unknown>)['broker'];
  if (broker === undefined) return {};
  if (broker === null || typeof broker !== 'object' || Array.isArray(broker)) throw configError(file, 'broker must be an object');
  const b = broker as Record<string, unknown>;
  const layer: BrokerLayer = {};
  const urls = list(b['url'] ?? b['urls']);
  if (urls) layer.urls = urls;
  const hosts = list(b['hosts'] ?? b['host']);
  if (hosts) layer.hosts = hosts;
  if (b['port'] !== undefined) {
    const port = Number(b['port']);
    if (!Number.isInteger(port) || port <= 0 || port > 65535) throw configError(file, `broker.port must be a port number (got ${JSON.stringify(b['port'])})`);
    layer.port = port;
  }
  for (const key of ['vhost', 'user', 'password'] as const) {
    const v = b[key];
    if (v === undefined) continue;
    // The password's value is never echoed, not even in an error.
    if (typeof v !== 'string') throw configError(file, `broker.${key} must be a string${key === 'password' ? '' : ` (got ${JSON.stringify(v)})`}`);
    layer[key] = v;
  }
  return layer;
}

function splitHost(host: string, port: number): [string, number] {
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(host);
  if (!m) return [host, port];
  return [m[1] as string, m[2] === undefined ? port : Number(m[2])];
}

/** Replaces the parts of `url` that `over` sets; a host list yields one URL per host. */
function override(url: string, over: BrokerLayer): string[] {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return [url]; // amqplib will reject it and the error names it
  }
  if (over.user !== undefined) u.username = encodeURIComponent(over.user);
  if (over.password !== undefined) u.password = encodeURIComponent(over.password);
  if (over.vhost !== undefined) u.pathname = `/${encodeURIComponent(over.vhost)}`;
  if (over.port !== undefined) u.port = String(over.port);
  if (over.hosts === undefined) return [u.toString()];
  return over.hosts.map((h) => {
    const c = new URL(u.toString());
    const [host, port] = splitHost(h, over.port ?? (Number(u.port) || 5672));
    c.hostname = host;
    c.port = String(port);
    return c.toString();
  });
}

/**
 * Resolves the layers (lowest first) as the daemon does: each key of a higher layer replaces
 * the lower one's, and a URL, once set, wins over hosts/port/vhost/user/password. Then the
 * command line's `--host` / `--vhost` replace those parts of every URL.
 */
export function resolveBrokerUrls(layers: readonly BrokerLayer[], flags: Pick<BrokerLayer, 'hosts' | 'vhost'> = {}): string[] {
  const merged: BrokerLayer = { ...DEFAULTS };
  for (const layer of layers) for (const [k, v] of Object.entries(layer)) if (v !== undefined) Object.assign(merged, { [k]: v });
  const { hosts = DEFAULTS.hosts, port = DEFAULTS.port, vhost = DEFAULTS.vhost, user = DEFAULTS.user, password = DEFAULTS.password } = merged;
  const auth = `${encodeURIComponent(user)}:${encodeURIComponent(password)}`;
  const base =
    merged.urls ??
    hosts.map((h) => {
      const [host, p] = splitHost(h, port);
      return `amqp://${auth}@${host}:${p}/${encodeURIComponent(vhost)}`;
    });
  const over: BrokerLayer = {};
  if (flags.hosts !== undefined) over.hosts = flags.hosts;
  if (flags.vhost !== undefined) over.vhost = flags.vhost;
  return base.flatMap((url) => override(url, over));
}
