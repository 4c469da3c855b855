/**
 * Broker settings → the list of nodes to connect to. The one owner of these rules, used by
 * the library's `Connection`, the daemon's configuration and the CLI:
 *
 * - a URL (`url`, or `POSTAGE_URL`), once given (not empty), wins over hosts/port/vhost; its
 *   own user and password win too, and the settings' credentials fill in what it leaves out;
 * - otherwise one node per entry of `hosts` (`host`, `host:port`, `[v6]`, `[v6]:port` or a
 *   bare IPv6 address), with `port`, `vhost`, `user`, `password`;
 * - a field not given comes from the environment (lib/env.ts), else from the defaults; the
 *   environment is read only for the fields not given;
 * - `override` replaces the host(s) or the vhost of every node (the CLI's `--host`, `--vhost`).
 *
 * Credentials stay out of URLs from here on: amqplib gets them through `credentials.plain()`
 * (a URL path mangled non-ASCII passwords), and logs only ever see {@link displayTarget}.
 */
import { invalidArgument } from '../errors.js';
import { BROKER_DEFAULTS, brokerEnv } from '../env.js';

/** TLS to the broker (an `amqps://` URL, or `tls` set with the host form). Files are PEM. */
export interface TlsSettings {
  /** CA certificate file(s) to verify the broker with. Default: Node's bundled CAs (plus NODE_EXTRA_CA_CERTS). */
  ca?: string | readonly string[];
  /** Client certificate file, for brokers that ask for one (and for `external`). */
  cert?: string;
  /** The client certificate's private key file. */
  key?: string;
  /** The name the broker's certificate must carry. Default: the host connected to. */
  servername?: string;
  /** Authenticate with the client certificate (SASL EXTERNAL) instead of user and password. Default: false. */
  external?: boolean;
}

/** Where the broker is. Anything left out comes from the `POSTAGE_*` environment, then the defaults. */
export interface BrokerSettings {
  /** One AMQP URL or a list to fail over; wins over `hosts`, `port` and `vhost`. */
  url?: string | readonly string[];
  /** Broker host(s): `host`, `host:port`, `[v6]:port`. Default: `127.0.0.1`. */
  hosts?: readonly string[];
  /** Default: 5672 (5671 with TLS). */
  port?: number;
  /** Default: `/`. */
  vhost?: string;
  /** Default: `guest`. */
  user?: string;
  /** Default: `guest`. Never logged. */
  password?: string;
  /**
   * TLS: `true` (Node's CAs) or the files to use, for every node of `hosts` (amqps) and for
   * every `amqps://` URL. `{ enabled: false, … }` keeps the hosts in plaintext and gives the
   * files to `amqps://` URLs only.
   */
  tls?: boolean | (TlsSettings & { enabled?: boolean });
}

/** Parts of every node to replace (the CLI's `--host`, `--vhost`). */
export interface BrokerOverride {
  hosts?: readonly string[];
  vhost?: string;
}

/** One broker node to connect to: what amqplib's object form of `connect` takes, and more. */
export interface BrokerTarget {
  protocol: 'amqp' | 'amqps';
  /** Without brackets for IPv6. */
  hostname: string;
  port: number;
  vhost: string;
  user: string;
  password: string;
  /** From a URL's `?heartbeat=`; otherwise the connection's option. */
  heartbeat?: number;
  frameMax?: number;
  channelMax?: number;
  /** TLS settings for `amqps` (empty object: system CAs). */
  tls?: TlsSettings;
}

/** The settings a caller gave, the environment consulted for the rest. */
export interface ResolvedBroker {
  targets: BrokerTarget[];
  /** Deprecation warnings of the environment variables used. */
  warnings: string[];
}

function portOf(value: unknown, key: string): number {
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (!Number.isInteger(n) || (n as number) < 1 || (n as number) > 65535) throw invalidArgument(key, value, 'must be a port number from 1 to 65535');
  return n as number;
}

/** `host`, `host:port`, `[v6]`, `[v6]:port`, or a bare IPv6 address (two colons or more). */
export function parseHost(entry: string, defaultPort: number): { hostname: string; port: number } {
  const value = entry.trim();
  const bracketed = /^\[([0-9A-Fa-f:.%\w]+)\](?::(\d+))?$/.exec(value);
  if (bracketed) return { hostname: bracketed[1] as string, port: bracketed[2] === undefined ? defaultPort : portOf(bracketed[2], 'hosts') };
  if ((value.match(/:/g) ?? []).length >= 2) return { hostname: value, port: defaultPort };
  const m = /^([^\s:/@[\]]+)(?::(\d*))?$/.exec(value);
  if (!m) throw invalidArgument('hosts', entry, 'must be host, host:port, [IPv6] or [IPv6]:port');
  return { hostname: m[1] as string, port: m[2] === undefined ? defaultPort : portOf(m[2], 'hosts') };
}

/** The TLS files, and whether the hosts form uses TLS. */
function tlsOf(tls: BrokerSettings['tls']): { files: TlsSettings | undefined; hosts: boolean } {
  if (tls === undefined || tls === false) return { files: undefined, hosts: false };
  if (tls === true) return { files: {}, hosts: true };
  const { enabled, ...files } = tls;
  return { files, hosts: enabled !== false };
}

function decode(part: string, key: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw invalidArgument(key, '(hidden)', 'has a malformed %-escape');
  }
}

/** A URL's node; its credentials win, `fallback` fills in what it leaves out. */
function targetOfUrl(url: string, fallback: { user: string; password: string; tls: TlsSettings | undefined }): BrokerTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    // Not echoed: an unparseable URL may still hold a password.
    throw invalidArgument('url', '(not shown: it may hold a password)', 'is not a URL such as amqp://user@host:5672/vhost');
  }
  if (u.protocol !== 'amqp:' && u.protocol !== 'amqps:') throw invalidArgument('url', redactUrl(url), 'must start with amqp:// or amqps://');
  const protocol = u.protocol === 'amqps:' ? 'amqps' : 'amqp';
  if (u.hostname === '') throw invalidArgument('url', redactUrl(url), 'has no host');
  const target: BrokerTarget = {
    protocol,
    hostname: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port === '' ? (protocol === 'amqps' ? 5671 : 5672) : portOf(u.port, 'url'),
    vhost: u.pathname.length > 1 ? decode(u.pathname.slice(1), 'url') : '/',
    user: u.username !== '' ? decode(u.username, 'url') : fallback.user,
    password: u.password !== '' ? decode(u.password, 'url') : fallback.password,
  };
  for (const [param, field] of [
    ['heartbeat', 'heartbeat'],
    ['frameMax', 'frameMax'],
    ['channelMax', 'channelMax'],
  ] as const) {
    const v = u.searchParams.get(param);
    if (v !== null) {
      if (!/^\d+$/.test(v)) throw invalidArgument(`url ?${param}`, v, 'must be a whole number');
      target[field] = Number(v);
    }
  }
  if (protocol === 'amqps') target.tls = fallback.tls ?? {};
  return target;
}

/**
 * The nodes `settings` describe, in failover order; fields not given come from `env`.
 * Throws `POSTAGE_ERR_INVALID_ARGUMENT` naming the bad field (never a password).
 */
export function resolveBroker(settings: BrokerSettings = {}, options: { env?: NodeJS.ProcessEnv; override?: BrokerOverride } = {}): ResolvedBroker {
  const fromEnv = brokerEnv(options.env ?? process.env);
  const env = fromEnv.settings;
  // Warn about a deprecated variable only when it was actually used for a field not given.
  const warnings = fromEnv.warnings.filter((w) => (w.startsWith('POSTAGE_RMQ_USER') ? settings.user === undefined : settings.password === undefined));
  const { files: tls, hosts: tlsHosts } = tlsOf(settings.tls ?? env.tls);
  const user = settings.user ?? env.user ?? BROKER_DEFAULTS.user;
  const password = settings.password ?? env.password ?? BROKER_DEFAULTS.password;
  const urls = settings.url === undefined ? env.url : typeof settings.url === 'string' ? [settings.url] : [...settings.url];
  let targets: BrokerTarget[];
  if (urls !== undefined && urls.length > 0) {
    targets = urls.map((url) => targetOfUrl(url, { user, password, tls }));
  } else {
    const port = settings.port ?? env.port ?? (tlsHosts ? 5671 : BROKER_DEFAULTS.port);
    const vhost = settings.vhost ?? env.vhost ?? BROKER_DEFAULTS.vhost;
    const hosts = settings.hosts ?? env.hosts ?? BROKER_DEFAULTS.hosts;
    if (hosts.length === 0) throw invalidArgument('hosts', hosts, 'must name at least one broker host');
    targets = hosts.map((h) => ({
      protocol: tlsHosts ? 'amqps' : 'amqp',
      ...parseHost(h, portOf(port, 'port')),
      vhost,
      user,
      password,
      ...(tlsHosts && tls ? { tls } : {}),
    }));
  }
  const over = options.override ?? {};
  if (over.vhost !== undefined) targets = targets.map((t) => ({ ...t, vhost: over.vhost as string }));
  if (over.hosts !== undefined) targets = targets.flatMap((t) => (over.hosts as readonly string[]).map((h) => ({ ...t, ...parseHost(h, t.port) })));
  return { targets, warnings };
}

/** A node as logs and errors show it: `amqp://user@host:port/vhost`, never the password. */
export function displayTarget(t: BrokerTarget): string {
  const host = t.hostname.includes(':') ? `[${t.hostname}]` : t.hostname;
  const who = t.tls?.external ? '' : `${encodeURIComponent(t.user)}@`;
  return `${t.protocol}://${who}${host}:${t.port}/${encodeURIComponent(t.vhost)}`;
}

/** Replaces the password of an AMQP URL by `***`, so a URL can be logged. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/\/\/([^:/@]*):[^@]*@/, '//$1:***@');
  }
}
