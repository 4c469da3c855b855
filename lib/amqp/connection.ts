import { EventEmitter } from 'node:events';
import amqp from 'amqplib';
import type { Channel, ConfirmChannel, RecoveringChannelModel } from 'amqplib';
import { ClosedError, PostageError, brand } from '../errors.js';
import { readEnv } from '../env.js';
import { defaultLogger, type Logger } from '../logger.js';

/** How to reach the broker. Anything left out comes from the `POSTAGE_*` environment. */
export interface ConnectionOptions {
  /** One AMQP URL or a list to fail over (first reachable wins). Default: `POSTAGE_URL`, else built from the fields below. */
  url?: string | readonly string[];
  /** Broker host(s). Default: `POSTAGE_HOST` or `127.0.0.1`. */
  hosts?: readonly string[];
  /** Default: `POSTAGE_PORT` or 5672. */
  port?: number;
  /** Default: `POSTAGE_VHOST` or `/`. */
  vhost?: string;
  /** Default: `POSTAGE_USER` or `guest`. */
  user?: string;
  /** Default: `POSTAGE_PASSWORD` or `guest`. Never logged. */
  password?: string;
  /** AMQP heartbeat in seconds. Default: 10. */
  heartbeat?: number;
  /** Attempts per URL before the first connection is given up. Default: 1 (fail fast). */
  connectAttempts?: number;
  /** Reconnect with backoff after the connection is lost (amqplib `recovery`). Default: true. */
  reconnect?: boolean;
  /** Backoff bounds for reconnection, in ms. Defaults: 100 and 5000. */
  reconnectDelay?: { initial?: number; max?: number };
  /** Connection name shown in the broker's management tools. */
  clientName?: string;
  logger?: Logger;
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

/** The URLs that `options` describe, in failover order. @internal */
export function brokerUrls(options: ConnectionOptions = {}): string[] {
  const env = readEnv();
  const given = options.url === undefined ? env.urls : typeof options.url === 'string' ? [options.url] : [...options.url];
  if (given.length > 0 && options.hosts === undefined) return given;
  const user = encodeURIComponent(options.user ?? env.user);
  const password = encodeURIComponent(options.password ?? env.password);
  const vhost = encodeURIComponent(options.vhost ?? env.vhost);
  const port = options.port ?? env.port;
  return (options.hosts ?? env.hosts).map((host) => {
    const [h, p] = host.includes(':') && !host.startsWith('[') ? host.split(':') : [host, undefined];
    return `amqp://${user}:${password}@${h}:${p ?? port}/${vhost}`;
  });
}

/** Adds `?heartbeat=N` unless the URL sets one (amqplib reads it from the URL). */
function withHeartbeat(url: string, seconds: number): string {
  if (/[?&]heartbeat=/.test(url)) return url;
  return `${url}${url.includes('?') ? '&' : '?'}heartbeat=${seconds}`;
}

const warned = new Set<string>();

/** Node's standard deprecation channel, once per variable per process (shown on stderr unless --no-deprecation). */
function warnDeprecated(warnings: readonly string[]): void {
  for (const w of warnings) {
    if (warned.has(w)) continue;
    warned.add(w);
    process.emitWarning(w, { type: 'DeprecationWarning', code: 'POSTAGE_DEP_ENV' });
  }
}

const registry = new Map<string, Connection>();
let defaultConnection: Connection | undefined;

/**
 * One broker connection, shared by every producer, consumer and RPC client of a process
 * (Python opened one per object). Connects lazily, with `noDelay` (Nagle turned a 0.5 ms
 * RPC into 44 ms here) and amqplib's `recovery` for reconnection. After a reconnect it
 * emits `reconnect`; channel owners open new channels and declare their topology again.
 */
export class Connection extends EventEmitter {
  readonly urls: readonly string[];
  readonly options: Readonly<ConnectionOptions>;
  readonly logger: Logger;
  /** How many times a connection was established (1 after the first). */
  generation = 0;
  /** True while the broker has told us it blocks publishers (memory or disk alarm). */
  blocked = false;
  private model: RecoveringChannelModel | undefined;
  private opening: Promise<RecoveringChannelModel> | undefined;
  private closing: Promise<void> | undefined;
  private closedReason: string | undefined;
  private urlInUse = '';

  constructor(options: ConnectionOptions = {}) {
    super();
    this.options = { ...options };
    this.urls = brokerUrls(options);
    const env = readEnv();
    this.logger = options.logger ?? defaultLogger(env.debug);
    warnDeprecated(env.warnings);
    if (this.urls.length === 0) throw new PostageError('POSTAGE_ERR_INVALID_ARGUMENT', 'no broker URL or host given', { key: 'url' });
  }

  /**
   * The process-wide connection for these options (same URLs and vhost, same object).
   * Producers and consumers created without a connection use `Connection.shared()`.
   */
  static shared(options: ConnectionOptions = {}): Connection {
    if (Object.keys(options).length === 0 && defaultConnection && !defaultConnection.closed) return defaultConnection;
    const key = brokerUrls(options).join(',');
    let conn = registry.get(key);
    if (conn === undefined || conn.closed) {
      conn = new Connection(options);
      registry.set(key, conn);
    }
    return conn;
  }

  /**
   * Makes `connection` what `Connection.shared()` (no options) returns, e.g. the daemon's own
   * connection, so that a plugin's `new GenericProducer()` talks to the broker the daemon was
   * configured with. `undefined` forgets it.
   */
  static setDefault(connection: Connection | undefined): void {
    defaultConnection = connection;
  }

  /** Closes every shared connection (tests, shutdown). */
  static async closeAll(reason = 'closeAll'): Promise<void> {
    const all = [...registry.values(), ...(defaultConnection ? [defaultConnection] : [])];
    registry.clear();
    defaultConnection = undefined;
    await Promise.all(all.map((c) => c.close(reason)));
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  /** The virtual host of the (first) broker URL; fingerprints report it. */
  get vhost(): string {
    try {
      const path = new URL(this.urlInUse || this.urls[0] || '').pathname;
      return path.length > 1 ? decodeURIComponent(path.slice(1)) : '/';
    } catch {
      return '/';
    }
  }

  /** Why the connection was closed (`quit`, `restart`, …), if it was. */
  get closeReason(): string | undefined {
    return this.closedReason;
  }

  /** The URL in use, with its password hidden. */
  get displayUrl(): string {
    return redactUrl(this.urlInUse || this.urls[0] || '');
  }

  /** Connects if needed and resolves once connected. */
  async ready(): Promise<RecoveringChannelModel> {
    if (this.closedReason !== undefined) throw new ClosedError('connection', this.closedReason);
    if (this.model) return this.model;
    this.opening ??= this.open().finally(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  async createChannel(): Promise<Channel> {
    const model = await this.ready();
    return model.createChannel();
  }

  /**
   * Runs `fn` on a channel of its own, closed afterwards. Declarations and checks go there:
   * a refused one (e.g. an exchange type clash) closes that channel only, never a shared one.
   */
  async withChannel<T>(fn: (channel: Channel) => Promise<T>): Promise<T> {
    const ch = await this.createChannel();
    ch.on('error', () => undefined); // the rejection of fn's operation carries the error
    try {
      return await fn(ch);
    } finally {
      await ch.close().catch(() => undefined);
    }
  }

  async createConfirmChannel(): Promise<ConfirmChannel> {
    const model = await this.ready();
    return model.createConfirmChannel();
  }

  private async open(): Promise<RecoveringChannelModel> {
    const attempts = Math.max(1, this.options.connectAttempts ?? 1);
    const errors: string[] = [];
    for (let attempt = 1; attempt <= attempts; attempt++) {
      for (const url of this.urls) {
        if (this.closedReason !== undefined) throw new ClosedError('connection', this.closedReason);
        try {
          const model: RecoveringChannelModel = await amqp.connect(withHeartbeat(url, this.options.heartbeat ?? 10), {
            noDelay: true,
            clientProperties: { connection_name: this.options.clientName ?? `postage ${process.pid}` },
            recovery: {
              initialMaxRetries: 0,
              maxRetries: this.options.reconnect === false ? 0 : Infinity,
              initialDelay: this.options.reconnectDelay?.initial ?? 100,
              maxDelay: this.options.reconnectDelay?.max ?? 5000,
            },
          });
          this.attach(model, url);
          return model;
        } catch (err) {
          errors.push(`${redactUrl(url)}: ${(err as Error).message}`);
        }
      }
      if (attempt < attempts) await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 5000)));
    }
    const tried = this.urls.map(redactUrl);
    throw new PostageError('POSTAGE_ERR_BROKER_UNREACHABLE', `broker unreachable at ${tried.join(', ')} (${errors.at(-1) ?? 'no attempt'})`, {
      urls: tried,
    });
  }

  private attach(model: RecoveringChannelModel, url: string): void {
    this.model = model;
    this.urlInUse = url;
    this.generation++;
    this.logger.debug('connected to broker', { url: redactUrl(url) });
    model.on('connect', () => {
      this.generation++;
      this.logger.info('reconnected to broker', { url: redactUrl(url), generation: this.generation });
      this.emit('reconnect', this.generation);
    });
    model.on('disconnect', (err: Error) => {
      this.logger.warn('lost the broker connection', { url: redactUrl(url), reason: err.message });
      this.emit('disconnect', err);
    });
    model.on('reconnect-failed', (err: Error) => {
      this.logger.error('gave up reconnecting to the broker', { url: redactUrl(url), reason: err.message });
      this.emit('failed', err);
    });
    model.on('blocked', (reason: string) => {
      this.blocked = true;
      this.logger.warn('broker blocks publishing', { reason });
    });
    model.on('unblocked', () => {
      this.blocked = false;
      this.logger.info('broker unblocked publishing');
    });
    // Without a listener an 'error' event would throw; the close that follows drives recovery.
    model.on('error', (err: Error) => this.logger.warn('broker connection error', { reason: err.message }));
  }

  /** Closes the connection (idempotent; concurrent callers share one promise). */
  close(reason = 'closed'): Promise<void> {
    this.closedReason ??= reason;
    this.closing ??= (async () => {
      const pending = this.opening;
      const model = this.model ?? (await pending?.catch(() => undefined));
      this.model = undefined;
      this.emit('close', reason);
      if (model) await model.close().catch(() => undefined);
    })();
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close('disposed');
  }
}
brand(Connection, 'Connection');
