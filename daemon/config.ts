/**
 * The daemon's configuration: one convict schema, the single source of truth for every key,
 * its default, its environment variable and its command-line flag (docs/config.md is
 * generated from it). Layers, lowest first: defaults < config file (`--config`) <
 * environment < command line. Loaded once, validated strictly, then frozen.
 */
import fs from 'node:fs';
import path from 'node:path';
import convict from 'convict';
import { ConfigError } from './config-error.js';
import { registerFormats, validateApps } from './config-formats.js';
import stripJsonComments from 'strip-json-comments';
import { SECRET_KEYS } from './secrets.js';
import { STATE_ENV } from './restart-state.js';
import { readSigningKeys } from 'postage/internal';

export { ConfigError } from './config-error.js';
export { redactConfig, secretsOf, SECRET_KEYS } from './secrets.js';

/** Per-application options, under `apps.<name>` (name = the plugin's application name or file base name). */
export interface AppConfig {
  /** Default: true. A disabled plugin is not started (shown as `stopped`). */
  enabled?: boolean;
  /** Groups joined at start; replace the plugin's `static groups`. */
  groups?: string[];
  /** Free options handed to the application as `settings`. */
  settings?: Record<string, unknown>;
  /** Overrides `defaults.prefetch` for this application. */
  prefetch?: number;
  /** Overrides `defaults.concurrency` for this application. */
  concurrency?: number;
  /** Overrides `defaults.handlerTimeout` for this application. */
  handlerTimeout?: number;
  /** Overrides `defaults.maxAttempts` for this application. */
  maxAttempts?: number;
  /** Overrides `defaults.maxDeliveries` for this application. */
  maxDeliveries?: number;
  /**
   * Overrides keys of `topology` for this application: e.g. `{ "mode": "postage" }` for the
   * one name a fleet shares with Python Postage applications, the others staying durable.
   */
  topology?: Partial<DaemonConfig['topology']>;
}

export interface DaemonConfig {
  name: string;
  host: string;
  pluginDir: string;
  watch: boolean;
  strictModes: boolean;
  watchDebounce: number;
  startTimeout: number;
  drainTimeout: number;
  shutdownTimeout: number;
  restart: { dedupeWindow: number; coalesceSkew: number };
  log: { level: 'error' | 'warn' | 'info' | 'debug'; format: 'auto' | 'json' | 'pretty' };
  broker: {
    url: string[];
    hosts: string[];
    port: number;
    vhost: string;
    user: string;
    password: string;
    heartbeat: number;
    connectAttempts: number;
    connectTimeout: number;
    reconnectDelay: { initial: number; max: number };
    tls: { enabled: boolean; ca: string[]; cert: string; key: string; servername: string; external: boolean };
  };
  faults: { quarantineAfter: number; quarantineWindow: number; quarantineTime: number; quarantineMaxTime: number };
  security: { signingKeyFile: string; signatureMaxAge: number; strictReplies: boolean };
  watchdog: { loopLagWarn: number; maxRss: number; interval: number };
  metrics: { listen: string };
  tracing: { enabled: boolean };
  defaults: { prefetch: number; concurrency: number; handlerTimeout: number; maxAttempts: number; maxDeliveries: number };
  topology: { mode: 'durable' | 'postage'; sharedQueueExpires: number; uniqueQueueExpires: number; quorum: boolean };
  apps: Record<string, AppConfig>;
}

/** The schema. Every key has `doc`, `default` and `format`; `env` and `arg` where useful. */
export const schema = {
  name: {
    doc: "Name of the daemon's own application (answers ping, status, quit, restart).",
    format: 'postaged-name',
    default: 'postaged',
    env: 'POSTAGED_NAME',
    arg: 'name',
  },
  host: {
    doc: 'Host name used in addresses (`@H`, `N@H`, `P@H`). Empty: the OS host name.',
    format: 'postaged-host',
    default: '',
    env: 'POSTAGE_HOSTNAME',
    arg: 'host',
  },
  pluginDir: {
    doc: 'Folder of plugin modules (.js, .mjs, .cjs, .ts), relative to the working directory.',
    format: 'postaged-path',
    default: 'plugins',
    env: 'POSTAGED_PLUGINS',
    arg: 'plugins',
  },
  watch: {
    doc: 'Watch the plugin folder: a new module starts live, a changed one triggers a graceful restart, a removed one stops.',
    format: 'postaged-bool',
    default: true,
    env: 'POSTAGED_WATCH',
    arg: 'watch',
  },
  strictModes: {
    doc: "Load only plugins nobody else can change, as sshd's StrictModes: a plugin folder or file owned by a user other than the daemon's or root, writable by its group (unless the owner's private group) or by everyone, a symlink leading out of the folder, or a non-regular file is refused (logged with the path and the reason, shown in status). Turning it off lets whoever can write the folder run code as the daemon (docs/security.md).",
    format: 'postaged-bool',
    default: true,
    env: 'POSTAGED_STRICT_MODES',
    arg: 'strict-modes',
  },
  watchDebounce: {
    doc: 'Milliseconds of quiet after the last change before the restart (saving ten files restarts once).',
    format: 'postaged-ms',
    default: 300,
    env: 'POSTAGED_WATCH_DEBOUNCE',
  },
  startTimeout: {
    doc: "Milliseconds an application's create() may take before it is marked failed.",
    format: 'postaged-ms',
    default: 10_000,
    env: 'POSTAGED_START_TIMEOUT',
  },
  drainTimeout: {
    doc: 'Milliseconds a stopping application waits for its in-flight handlers (logged when it expires).',
    format: 'postaged-ms',
    default: 10_000,
    env: 'POSTAGED_DRAIN_TIMEOUT',
    arg: 'drain-timeout',
  },
  shutdownTimeout: {
    doc: 'Milliseconds a quit or restart may take in all; then a watchdog names what is still open and exits 1. Must exceed drainTimeout.',
    format: 'postaged-ms',
    default: 20_000,
    env: 'POSTAGED_SHUTDOWN_TIMEOUT',
  },
  restart: {
    dedupeWindow: {
      doc: 'Milliseconds a control command id (AMQP message_id) is remembered, across re-execs, so that a copy delivered again is not acted on twice.',
      format: 'postaged-ms',
      default: 600_000,
      env: 'POSTAGED_RESTART_DEDUPE_WINDOW',
    },
    coalesceSkew: {
      doc: "A restart sent (by the sender's clock) more than this many ms before the current generation started is already satisfied and ignored, so a storm of restarts ends in few re-execs. It allows for clocks that differ between hosts.",
      format: 'postaged-ms',
      default: 1000,
      env: 'POSTAGED_RESTART_COALESCE_SKEW',
    },
  },
  log: {
    level: {
      doc: 'Lowest level logged; `debug` also traces every message received and sent.',
      format: ['error', 'warn', 'info', 'debug'],
      default: 'info',
      env: 'POSTAGED_LOG_LEVEL',
      arg: 'log-level',
    },
    format: {
      doc: '`json` (one object per line), `pretty` (readable), or `auto`: pretty on a terminal, JSON otherwise.',
      format: ['auto', 'json', 'pretty'],
      default: 'auto',
      env: 'POSTAGED_LOG_FORMAT',
      arg: 'log-format',
    },
  },
  broker: {
    url: {
      doc: 'AMQP URL, or a comma-separated list to fail over; when set it wins over hosts, port, vhost, user and password. Never printed with its password.',
      format: 'postaged-url-list',
      default: [] as string[],
      env: 'POSTAGE_URL',
      sensitive: true,
    },
    hosts: {
      doc: 'Broker host (or host:port), or a comma-separated list to fail over.',
      format: 'postaged-host-list',
      default: ['127.0.0.1'],
      env: 'POSTAGE_HOST',
    },
    port: {
      doc: 'Broker port (for the hosts that give none). With broker.tls.enabled, the default 5672 means 5671, the AMQPS port.',
      format: 'postaged-port',
      default: 5672,
      env: 'POSTAGE_PORT',
    },
    vhost: {
      doc: 'RabbitMQ virtual host.',
      format: 'postaged-string',
      default: '/',
      env: 'POSTAGE_VHOST',
      arg: 'vhost',
    },
    user: {
      doc: 'Broker user (the deprecated POSTAGE_RMQ_USER is still read, with a warning).',
      format: 'postaged-string',
      default: 'guest',
      env: 'POSTAGE_USER',
    },
    password: {
      doc: 'Broker password (the deprecated POSTAGE_RMQ_PASSWORD is still read, with a warning). Never printed.',
      format: 'postaged-string',
      default: 'guest',
      env: 'POSTAGE_PASSWORD',
      sensitive: true,
    },
    heartbeat: {
      doc: 'AMQP heartbeat in seconds. Two intervals without a byte from the broker and the connection is taken for dead, and reconnected (backoff broker.reconnectDelay; at least 1 s after the broker refused the login or the vhost).',
      format: 'postaged-positive-int',
      default: 10,
      env: 'POSTAGED_HEARTBEAT',
    },
    connectAttempts: {
      doc: 'Rounds over the node list before giving up at start (exit 69), with backoff between rounds. After the first connection, reconnection goes on for ever.',
      format: 'postaged-positive-int',
      default: 10,
      env: 'POSTAGED_CONNECT_ATTEMPTS',
    },
    connectTimeout: {
      doc: 'Milliseconds one node may take to accept the TCP connection and the AMQP handshake (a black-holed host otherwise stalls for the OS SYN timeout).',
      format: 'postaged-positive-ms',
      default: 5000,
      env: 'POSTAGED_CONNECT_TIMEOUT',
    },
    tls: {
      enabled: {
        doc: 'Connect with TLS (amqps, port 5671 by default) to the nodes of broker.hosts; an amqps:// URL uses TLS whatever this says. Never falls back to plaintext.',
        format: 'postaged-bool',
        default: false,
        env: 'POSTAGE_TLS',
      },
      ca: {
        doc: "CA certificate file(s) (PEM) the broker's certificate must chain to. Empty: Node's bundled CAs (plus NODE_EXTRA_CA_CERTS).",
        format: 'postaged-path-list',
        default: [] as string[],
        env: 'POSTAGE_TLS_CA',
      },
      cert: {
        doc: 'Client certificate file (PEM), for a broker that asks for one, or for tls.external.',
        format: 'postaged-string',
        default: '',
        env: 'POSTAGE_TLS_CERT',
      },
      key: {
        doc: "The client certificate's private key file (PEM). Keep it readable by the daemon only.",
        format: 'postaged-string',
        default: '',
        env: 'POSTAGE_TLS_KEY',
      },
      servername: {
        doc: "The name the broker's certificate must carry. Empty: the host connected to.",
        format: 'postaged-string',
        default: '',
        env: 'POSTAGE_TLS_SERVERNAME',
      },
      external: {
        doc: 'Authenticate with the client certificate (SASL EXTERNAL, the rabbitmq_auth_mechanism_ssl plugin) instead of broker.user and broker.password.',
        format: 'postaged-bool',
        default: false,
        env: 'POSTAGE_TLS_EXTERNAL',
      },
    },
    reconnectDelay: {
      initial: {
        doc: 'Milliseconds before the second round over the node list; doubled each round (±20 % jitter) up to reconnectDelay.max.',
        format: 'postaged-positive-ms',
        default: 100,
        env: 'POSTAGED_RECONNECT_DELAY',
      },
      max: {
        doc: 'Longest pause between two rounds over the node list, in ms.',
        format: 'postaged-positive-ms',
        default: 5000,
        env: 'POSTAGED_RECONNECT_MAX_DELAY',
      },
    },
  },
  security: {
    signingKeyFile: {
      doc: 'File of shared secrets for signed control commands, one per line (the first signs, every one verifies: add the new secret second, then first, then remove the old one). When set (or POSTAGE_SIGNING_KEY is), quit, restart, join_group and leave_group must be signed, recent and not replayed, or they are refused and counted (status `refused`); the CLI and the producers of plugins sign with it. Keep it readable by the daemon only. Empty: off.',
      format: 'postaged-string',
      default: '',
      env: 'POSTAGE_SIGNING_KEY_FILE',
    },
    signatureMaxAge: {
      doc: 'Milliseconds a signed control command stays valid (either way, for clocks that differ between hosts); older ones are refused as stale.',
      format: 'postaged-positive-ms',
      default: 60_000,
      env: 'POSTAGED_SIGNATURE_MAX_AGE',
    },
    strictReplies: {
      doc: "Answer an RPC only when its reply_to is a caller's reply queue (amq.rabbitmq.reply-to… or a server-named amq.gen-… queue, what postage and Python Postage callers use); otherwise any caller could make a responder publish into any queue. Refusals are counted (status `refused`).",
      format: 'postaged-bool',
      default: false,
      env: 'POSTAGED_STRICT_REPLIES',
    },
  },
  faults: {
    quarantineAfter: {
      doc: 'A plugin that crashes the process (uncaught exception, process.exit()) this many times within faults.quarantineWindow is quarantined: not loaded until faults.quarantineTime has passed. Each crash restarts the daemon in place.',
      format: 'postaged-positive-int',
      default: 3,
      env: 'POSTAGED_QUARANTINE_AFTER',
    },
    quarantineWindow: {
      doc: 'Milliseconds over which the crashes of a plugin are counted.',
      format: 'postaged-positive-ms',
      default: 600_000,
      env: 'POSTAGED_QUARANTINE_WINDOW',
    },
    quarantineTime: {
      doc: "Milliseconds of a plugin's first quarantine; each next one lasts twice as long, up to faults.quarantineMaxTime. Changing the plugin's file lifts it.",
      format: 'postaged-positive-ms',
      default: 60_000,
      env: 'POSTAGED_QUARANTINE_TIME',
    },
    quarantineMaxTime: {
      doc: 'Longest quarantine, in ms.',
      format: 'postaged-positive-ms',
      default: 3_600_000,
      env: 'POSTAGED_QUARANTINE_MAX_TIME',
    },
  },
  watchdog: {
    loopLagWarn: {
      doc: 'An event-loop block longer than this many ms is logged, naming the application whose handler held it when known; the largest recent one is in `status`. 0: never logged.',
      format: 'postaged-ms',
      default: 1000,
      env: 'POSTAGED_LOOP_LAG_WARN',
    },
    maxRss: {
      doc: 'Resident memory, in MiB, above which the daemon restarts in place (gracefully: drain, close, re-exec), before the OOM killer stops it the hard way. 0: no cap.',
      format: 'postaged-mib',
      default: 0,
      env: 'POSTAGED_MAX_RSS',
    },
    interval: {
      doc: 'Milliseconds between two checks of the event loop and the memory.',
      format: 'postaged-positive-ms',
      default: 500,
      env: 'POSTAGED_WATCHDOG_INTERVAL',
    },
  },
  metrics: {
    listen: {
      doc: 'Where to serve Prometheus metrics (`/metrics`) and the health probes (`/healthz`, `/readyz`) over HTTP: `PORT` (bound to 127.0.0.1), `HOST:PORT` or `[IPv6]:PORT` (e.g. `0.0.0.0:9464` in a container); port 0 picks a free one (logged). Empty: no listener. Counters survive in-place restarts (docs/observability.md).',
      format: 'postaged-listen',
      default: '',
      env: 'POSTAGED_METRICS_LISTEN',
      arg: 'metrics-listen',
    },
  },
  tracing: {
    enabled: {
      doc: "Run each message's handlers in its W3C trace context (`traceparent` header, else a new trace): their log lines carry `trace_id` and `span_id`, their sends and RPC replies carry the trace on. Costs every promise of the process a little (an AsyncLocalStorage on Node 20; bench/metrics.bench.ts measures it).",
      format: 'postaged-bool',
      default: true,
      env: 'POSTAGED_TRACING',
    },
  },
  defaults: {
    prefetch: {
      doc: 'Broker prefetch per application, 1 to 65535 (apps.<name>.prefetch overrides it).',
      format: 'postaged-prefetch',
      default: 50,
      env: 'POSTAGED_PREFETCH',
    },
    concurrency: {
      doc: 'Messages an application handles at once (apps.<name>.concurrency overrides it).',
      format: 'postaged-positive-int',
      default: 1,
      env: 'POSTAGED_CONCURRENCY',
    },
    handlerTimeout: {
      doc: "Milliseconds a handler may run; past it the message is dead-lettered (reason `timeout`), an RPC is answered with a TimeoutError, and the application goes on. 0: no limit. Keep it well below the broker's consumer timeout (30 min), which would close the whole channel.",
      format: 'postaged-ms',
      default: 300_000,
      env: 'POSTAGED_HANDLER_TIMEOUT',
    },
    maxAttempts: {
      doc: 'Tries a message whose handler throws gets in all (with backoff from 100 ms to 5 s, the attempt recorded in `x-postage-attempt`), before it is dead-lettered with the error. 1: no retry.',
      format: 'postaged-positive-int',
      default: 5,
      env: 'POSTAGED_MAX_ATTEMPTS',
    },
    maxDeliveries: {
      doc: "Deliveries a message may have had without an ack before it is dead-lettered unhandled (reason `redelivered`, counted in status `invalid`): the bound on a message that kills every process it reaches (a plugin blocking the event loop until the watchdog kills the daemon, an OOM kill, a crash in a native addon), which maxAttempts cannot see. Counted by the broker (`x-delivery-count`), so only on quorum queues (`topology.quorum`); classic queues count nothing. Each restart, reconnection or expired drain adds one to every unacked message, so keep it well above what those produce. 0: off.",
      format: 'postaged-limit',
      default: 20,
      env: 'POSTAGED_MAX_DELIVERIES',
    },
  },
  topology: {
    mode: {
      doc: '`durable`: queues survive restarts (durable, expiring, dead-lettered); `postage`: Python Postage 1.2.1 flags, to share queues with Python components.',
      format: ['durable', 'postage'],
      default: 'durable',
      env: 'POSTAGED_TOPOLOGY',
    },
    sharedQueueExpires: {
      doc: 'Milliseconds an unused shared queue (N, N@H, N#G) lives on (durable mode).',
      format: 'postaged-positive-int',
      default: 7 * 24 * 3600 * 1000,
      env: 'POSTAGED_SHARED_QUEUE_EXPIRES',
    },
    uniqueQueueExpires: {
      doc: "Milliseconds an application's own queue lives on after its process is gone; it outlives a re-exec (durable mode).",
      format: 'postaged-positive-int',
      default: 60_000,
      env: 'POSTAGED_UNIQUE_QUEUE_EXPIRES',
    },
    quorum: {
      doc: 'Declare the applications\' queues (shared, group and their own) as quorum queues, replicated on a cluster: an instance\'s own queue then survives the loss of its node.',
      format: 'postaged-bool',
      default: false,
      env: 'POSTAGED_QUORUM',
    },
  },
  apps: {
    doc: 'Per-application options by application name: `{ "<name>": { "enabled", "groups", "settings", "prefetch", "concurrency", "handlerTimeout", "maxAttempts", "maxDeliveries", "topology" } }`; `topology` takes the keys of `topology` (e.g. `{ "mode": "postage" }`) for that application only.',
    format: Object,
    default: {} as Record<string, AppConfig>,
  },
};

/** Where each key's value came from. */
export type Source = 'default' | 'file' | 'env' | 'argv';

export interface LoadedConfig {
  config: Readonly<DaemonConfig>;
  /** Absolute path of the config file, if one was given. */
  configFile: string | null;
  /** Source of every leaf key. */
  sources: Record<string, Source>;
  /** Deprecation warnings to log once the logger exists. */
  warnings: string[];
}

export interface LoadOptions {
  /** Config file (`--config`, else `POSTAGED_CONFIG`). */
  configFile?: string | undefined;
  /** Overrides from the command line, by schema key. */
  argv?: Record<string, string | boolean>;
  env?: NodeJS.ProcessEnv;
}

/** Every leaf of the schema with its dotted key. */
export function schemaEntries(): Array<{ key: string; item: SchemaItem }> {
  const out: Array<{ key: string; item: SchemaItem }> = [];
  const walk = (node: Record<string, unknown>, prefix: string): void => {
    for (const [k, v] of Object.entries(node)) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (v && typeof v === 'object' && 'default' in v) out.push({ key, item: v as SchemaItem });
      else walk(v as Record<string, unknown>, key);
    }
  };
  walk(schema, '');
  return out;
}

export interface SchemaItem {
  doc: string;
  format: unknown;
  default: unknown;
  env?: string;
  arg?: string;
  sensitive?: boolean;
}

function readFileLayer(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError('--config', code === 'ENOENT' ? `config file not found: ${file}` : `cannot read config file ${file}: ${(err as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(stripJsonComments(text));
  } catch (err) {
    throw new ConfigError('--config', `config file ${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) throw new ConfigError('--config', `config file ${file} must hold a JSON object`);
  return data as Record<string, unknown>;
}

function has(obj: Record<string, unknown>, dotted: string): boolean {
  let node: unknown = obj;
  for (const part of dotted.split('.')) {
    if (node === null || typeof node !== 'object' || !Object.prototype.hasOwnProperty.call(node, part)) return false;
    node = (node as Record<string, unknown>)[part];
  }
  return true;
}

function describe(value: unknown): string {
  const s = JSON.stringify(value) ?? String(value);
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

/** Deprecated environment names, mapped before convict reads the environment. */
function withDeprecatedEnv(env: NodeJS.ProcessEnv, warnings: string[]): NodeJS.ProcessEnv {
  const out = { ...env };
  for (const [old, current] of [
    ['POSTAGE_RMQ_USER', 'POSTAGE_USER'],
    ['POSTAGE_RMQ_PASSWORD', 'POSTAGE_PASSWORD'],
  ] as const) {
    if (out[old] !== undefined && out[current] === undefined) {
      out[current] = out[old];
      warnings.push(`${old} is deprecated: use ${current}`);
    }
  }
  return out;
}

/** `POSTAGED_*` variables that are not settings: the config file's path, and the state a generation hands to the next. */
const OTHER_ENV = ['POSTAGED_CONFIG', STATE_ENV];

/**
 * A `POSTAGED_*` variable that names no setting is a typo (`POSTAGED_PREFECTH`) or a setting
 * that does not exist: refused like an unknown key in the file, rather than silently ignored
 * while the default applies.
 */
function refuseUnknownEnv(env: NodeJS.ProcessEnv, entries: Array<{ key: string; item: SchemaItem }>): void {
  const known = new Set<string>([...OTHER_ENV, ...entries.flatMap((e) => (e.item.env ? [e.item.env] : []))]);
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined || !name.startsWith('POSTAGED_') || known.has(name)) continue;
    const suggestion = [...known].map((k) => ({ k, d: editDistance(name, k) })).sort((a, b) => a.d - b.d)[0];
    // The value is not shown: a mistyped name is no sign that it holds no secret (a URL with its password).
    throw new ConfigError(name, `${name}: unknown environment variable${suggestion && suggestion.d <= 3 ? `; did you mean ${suggestion.k}?` : ''} (docs/config.md lists every setting)`);
  }
}

/** Levenshtein distance, for "did you mean". */
function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min((row[j] ?? 0) + 1, (next[j - 1] ?? 0) + 1, (row[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length] ?? 0;
}

/**
 * Loads the configuration: defaults < file < environment < command line, validated strictly.
 * Throws `ConfigError` naming the key and the value (secrets excepted).
 */
export function loadConfig(options: LoadOptions = {}): LoadedConfig {
  registerFormats();
  const warnings: string[] = [];
  const env = withDeprecatedEnv(options.env ?? process.env, warnings);
  const entries = schemaEntries();
  refuseUnknownEnv(env, entries);
  // Convict reads the environment itself; the command line is applied by `set` below, after
  // the file, because convict's own argv parser turns "007" into 7.
  const conf = convict<DaemonConfig>(schema as unknown as convict.Schema<DaemonConfig>, { env, args: [] });
  const configFile = options.configFile ? path.resolve(options.configFile) : null;
  let fileData: Record<string, unknown> = {};
  if (configFile) {
    fileData = readFileLayer(configFile);
    conf.load(fileData);
  }
  const sources: Record<string, Source> = {};
  for (const { key, item } of entries) {
    sources[key] = item.env && env[item.env] !== undefined ? 'env' : has(fileData, key) ? 'file' : 'default';
  }
  for (const [key, value] of Object.entries(options.argv ?? {})) {
    conf.set(key, typeof value === 'boolean' ? String(value) : value);
    sources[key] = 'argv';
  }
  validate(conf, entries, sources);
  const config = conf.getProperties();
  validateApps(config.apps);
  const tls = config.broker.tls;
  for (const [key, file] of [...tls.ca.map((f) => ['broker.tls.ca', f] as const), ['broker.tls.cert', tls.cert] as const, ['broker.tls.key', tls.key] as const]) {
    if (!file) continue;
    try {
      fs.accessSync(file, fs.constants.R_OK);
    } catch (err) {
      throw new ConfigError(key, `${key}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }
  if (tls.external && (!tls.cert || !tls.key)) throw new ConfigError('broker.tls.external', 'broker.tls.external: needs broker.tls.cert and broker.tls.key (the certificate is the credential)');
  if (config.security.signingKeyFile) {
    try {
      readSigningKeys(config.security.signingKeyFile);
    } catch (err) {
      throw new ConfigError('security.signingKeyFile', `security.signingKeyFile: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message} (file ${config.security.signingKeyFile})`);
    }
  }
  if (config.shutdownTimeout <= config.drainTimeout) {
    throw new ConfigError('shutdownTimeout', `shutdownTimeout: must be greater than drainTimeout (${config.drainTimeout}), so that drains can finish before the watchdog fires (value ${config.shutdownTimeout})`);
  }
  return { config: deepFreeze(config), configFile, sources, warnings };
}

function validate(conf: convict.Config<DaemonConfig>, entries: Array<{ key: string; item: SchemaItem }>, sources: Record<string, Source>): void {
  try {
    conf.validate({ allowed: 'strict' });
  } catch (err) {
    const secret = new Set<string>(SECRET_KEYS);
    const instance = conf.getProperties() as unknown as Record<string, unknown>;
    const lines = String((err as Error).message)
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((line) => {
        const undeclared = /^configuration param '([^']+)' not declared in the schema$/.exec(line);
        if (undeclared) {
          const key = undeclared[1] ?? '';
          const suggestion = entries.find((e) => e.key.toLowerCase() === key.toLowerCase() || e.key.endsWith(`.${key}`));
          return {
            key,
            // An unknown key may still hold a URL with its password (a mistyped `broker.url`).
            text: `${key}: unknown key (value ${describe(lookup(instance, key)).replace(/(\w+:\/\/[^:/@\s"]*):[^@\s"]*@/g, '$1:***@')})${suggestion ? `; did you mean ${suggestion.key}?` : ''}`,
          };
        }
        const key = line.split(':')[0] ?? '';
        const known = entries.find((e) => e.key === key);
        const from = known ? ` [from ${sources[key] === 'env' ? `env ${known.item.env}` : sources[key] === 'argv' ? `--${known.item.arg}` : sources[key]}]` : '';
        const text = secret.has(key) ? line.replace(/: value was .*$/, '') : line.replace(/: value was (.*)$/, (_m, v: string) => ` (value ${v})`);
        return { key, text: `${text}${from}` };
      });
    const first = lines[0];
    throw new ConfigError(first?.key ?? 'config', lines.map((l) => l.text).join('\n'));
  }
}

function lookup(obj: Record<string, unknown>, dotted: string): unknown {
  let node: unknown = obj;
  for (const part of dotted.split('.')) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
