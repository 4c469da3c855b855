/**
 * Where the broker is, read as `postaged` reads it (daemon/config.ts, `broker.*`):
 * defaults < `--config` file (its `broker` section, the daemon's keys and nothing else) <
 * `POSTAGE_*` environment; then `--host` and `--vhost` replace those parts of every node, so
 * `POSTAGE_URL=… postage ps --vhost other` asks the same broker about another vhost. The
 * rules themselves (a URL wins over hosts/port/vhost, `[v6]:port`, credentials) are the
 * library's (`resolveBroker`); this file only gathers the layers.
 */
import { readFile } from 'node:fs/promises';
import type { BrokerSettings } from 'postage';
import { brokerEnv, splitList, type BrokerOverride } from 'postage/internal';
import stripJsonComments from 'strip-json-comments';
import { CliError, ExitCode } from './exit-codes.js';

/** The keys of the daemon's `broker` section; `heartbeat` and `connectAttempts` are the daemon's (the CLI tries once). */
const BROKER_KEYS = ['url', 'hosts', 'port', 'vhost', 'user', 'password', 'heartbeat', 'connectAttempts', 'connectTimeout', 'reconnectDelay', 'tls'] as const;
const TLS_KEYS = ['enabled', 'ca', 'cert', 'key', 'servername', 'external'] as const;

/** The environment layer: only the variables that are set, and deprecation warnings. */
export function envLayer(env: NodeJS.ProcessEnv = process.env): { layer: BrokerSettings; warnings: string[] } {
  const { settings, warnings } = brokerEnv(env);
  return { layer: settings, warnings };
}

function configError(file: string, message: string): CliError {
  return new CliError(ExitCode.CONFIG, `invalid config file ${file}: ${message}`);
}

function list(value: unknown, key: string, file: string): string[] {
  if (typeof value === 'string') return splitList(value);
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value.map((v) => v.trim()).filter(Boolean);
  throw configError(file, `broker.${key} must be a string or a list of strings`);
}

/** A config file's top-level object (JSON with comments); exit 78 when it is missing or invalid. */
async function readConfigFile(file: string): Promise<Record<string, unknown>> {
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
  return doc as Record<string, unknown>;
}

/**
 * `security.signingKeyFile` of a `postaged` config file: the CLI signs its control commands
 * with the daemon's secrets (the daemon refuses unsigned ones when they are set).
 */
export async function fileSigningKeyFile(file: string): Promise<string | undefined> {
  const security = (await readConfigFile(file))['security'];
  if (security === undefined || security === null || typeof security !== 'object') return undefined;
  const keyFile = (security as Record<string, unknown>)['signingKeyFile'];
  if (keyFile === undefined || keyFile === '') return undefined;
  if (typeof keyFile !== 'string') throw configError(file, 'security.signingKeyFile must be a string');
  return keyFile;
}

/**
 * The broker section of a `postaged` config file (JSON with comments), validated as the
 * daemon validates it: an unknown key in `broker` is an error naming it. Other sections are
 * the daemon's and are ignored here.
 */
export async function fileLayer(file: string): Promise<BrokerSettings> {
  const doc = await readConfigFile(file);
  const broker = doc['broker'];
  if (broker === undefined) return {};
  if (broker === null || typeof broker !== 'object' || Array.isArray(broker)) throw configError(file, 'broker must be an object');
  const b = broker as Record<string, unknown>;
  for (const key of Object.keys(b)) {
    if (!(BROKER_KEYS as readonly string[]).includes(key)) throw configError(file, `broker.${key}: unknown key; known keys: ${BROKER_KEYS.join(', ')}`);
  }
  const layer: BrokerSettings = {};
  if (b['url'] !== undefined) layer.url = list(b['url'], 'url', file);
  if (b['hosts'] !== undefined) layer.hosts = list(b['hosts'], 'hosts', file);
  if (b['port'] !== undefined) {
    const port = b['port'];
    if (!Number.isInteger(port) || (port as number) <= 0 || (port as number) > 65535) throw configError(file, `broker.port must be a port number (got ${JSON.stringify(port)})`);
    layer.port = port as number;
  }
  if (b['tls'] !== undefined) layer.tls = tlsSection(b['tls'], file);
  for (const key of ['vhost', 'user', 'password'] as const) {
    const v = b[key];
    if (v === undefined) continue;
    // The password's value is never echoed, not even in an error.
    if (typeof v !== 'string') throw configError(file, `broker.${key} must be a string${key === 'password' ? '' : ` (got ${JSON.stringify(v)})`}`);
    layer[key] = v;
  }
  return layer;
}

/** `broker.tls` of a config file, checked as the daemon checks it. */
function tlsSection(value: unknown, file: string): NonNullable<BrokerSettings['tls']> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw configError(file, 'broker.tls must be an object');
  const t = value as Record<string, unknown>;
  for (const k of Object.keys(t)) if (!(TLS_KEYS as readonly string[]).includes(k)) throw configError(file, `broker.tls.${k}: unknown key; known keys: ${TLS_KEYS.join(', ')}`);
  const str = (k: string): string | undefined => {
    const v = t[k];
    if (v === undefined || v === '') return undefined;
    if (typeof v !== 'string') throw configError(file, `broker.tls.${k} must be a string`);
    return v;
  };
  const bool = (k: string): boolean => {
    const v = t[k];
    if (v !== undefined && typeof v !== 'boolean') throw configError(file, `broker.tls.${k} must be true or false`);
    return v === true;
  };
  const ca = t['ca'] === undefined ? undefined : list(t['ca'], 'tls.ca', file);
  const cert = str('cert');
  const key = str('key');
  const servername = str('servername');
  return { enabled: bool('enabled'), ...(ca && ca.length > 0 ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}), ...(servername ? { servername } : {}), ...(bool('external') ? { external: true } : {}) };
}

/** The layers merged, lowest first: each key a higher layer sets replaces the lower one's. */
export function mergeLayers(layers: readonly BrokerSettings[]): BrokerSettings {
  const merged: Record<string, unknown> = {};
  for (const layer of layers) for (const [k, v] of Object.entries(layer)) if (v !== undefined) merged[k] = v;
  return merged as BrokerSettings;
}

/** The command line's `--host` (a comma-separated list) and `--vhost`. */
export function flagsOverride(flags: { host?: string; vhost?: string }): BrokerOverride {
  const override: BrokerOverride = {};
  if (flags.host !== undefined) override.hosts = splitList(flags.host);
  if (flags.vhost !== undefined) override.vhost = flags.vhost;
  return override;
}
