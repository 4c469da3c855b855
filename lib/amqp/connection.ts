import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import amqp from 'amqplib';
import type { Channel, ChannelModel, ConfirmChannel } from 'amqplib';
import { ClosedError, PostageError, brand } from '../errors.js';
import { debugMode, localHostname, signingEnv } from '../env.js';
import { NonceStore } from '../wire/signature.js';
import { defaultLogger, type Logger } from '../logger.js';
import { displayTarget, resolveBroker, type BrokerOverride, type BrokerSettings, type BrokerTarget } from './broker-address.js';
import type { ExchangeClass } from './exchange.js';
import { Publisher } from './publisher.js';
import { ReplyLanes } from './reply-lanes.js';

/** How to reach the broker and how to behave when it goes away. */
export interface ConnectionOptions extends BrokerSettings {
  /**
   * AMQP heartbeat in seconds (a URL's `?heartbeat=` wins for its node). Two intervals without
   * a byte from the broker and the connection is taken for dead, and reconnected. Default: 10.
   */
  heartbeat?: number;
  /** Milliseconds a node may take to accept the TCP connection and the AMQP handshake. Default: 5000. */
  connectTimeout?: number;
  /** Rounds over the node list before the first connection is given up. Default: 1 (fail fast). */
  connectAttempts?: number;
  /** Reconnect after the connection is lost, over the whole node list, forever. Default: true. */
  reconnect?: boolean;
  /**
   * Backoff between rounds, in ms: doubles from `initial` up to `max`, ±20 % jitter; at least
   * 1 s after a round the broker refused (login, vhost access). Defaults: 100 and 5000.
   */
  reconnectDelay?: { initial?: number; max?: number };
  /** Connection name shown in the broker's management tools. */
  clientName?: string;
  /** Most channels used for RPC replies at once (one per call in flight). Default: 256. */
  maxReplyChannels?: number;
  /** Replaces parts of every node (the CLI's `--host`, `--vhost`). */
  override?: BrokerOverride;
  /**
   * Who this process is, for the producers, processors and applications made on this
   * connection (fingerprints and addresses). Default host: `POSTAGE_HOSTNAME`, else the OS's.
   */
  identity?: { host?: string };
  /**
   * Signed control commands (`quit`, `restart`, `join_group`, `leave_group`): producers on this
   * connection sign them, processors refuse those that are unsigned, badly signed, older than
   * `maxAgeMs` (default 60000) or replayed. `secrets`: the first signs, every one verifies
   * (rotation). Default: `POSTAGE_SIGNING_KEY_FILE` / `POSTAGE_SIGNING_KEY`, else off.
   */
  signing?: { secrets: ReadonlyArray<string | Buffer>; maxAgeMs?: number };
  /** The environment consulted for the fields not given. Default: `process.env`. */
  env?: NodeJS.ProcessEnv;
  logger?: Logger;
}

/** Where the connection is in its life. */
export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

/** How an RPC call made on a connection ended. */
export type RpcOutcome = 'ok' | 'error' | 'exception' | 'timeout' | 'closed';

/**
 * One RPC call made by a producer of this connection, once it has ended: for metrics. Only
 * emitted when something listens (`connection.on('rpc', …)`).
 */
export interface RpcCallEvent {
  /** The command's name (the message name). */
  command: string;
  /**
   * `ok` (a success result), `error` (a `MessageResultError`), `exception` (the remote
   * handler threw), `timeout` (every try timed out), `closed` (the connection closed first).
   */
  outcome: RpcOutcome;
  /** From the call to its result, every try included, in ms. */
  durationMs: number;
  /** The application whose handler made the call, when one did. */
  caller: string | undefined;
}

/** Events of a {@link Connection}. */
export interface ConnectionEvents {
  /** An RPC call of one of this connection's producers ended (see {@link RpcCallEvent}). */
  rpc: [event: RpcCallEvent];
  /** Connected (again): `generation` counts connections made, 1 for the first. */
  connect: [generation: number, target: string];
  /** A connection after the first: channel owners open new channels. */
  reconnect: [generation: number];
  /** The connection was lost; reconnection starts (unless `reconnect: false`). */
  disconnect: [error: Error];
  /** Reconnection is off and the connection was lost, or was given up: the connection is closed. */
  failed: [error: Error];
  /** The broker blocks (`true`, memory or disk alarm) or unblocks (`false`) publishing. */
  blocked: [blocked: boolean, reason?: string];
  close: [reason: string];
}

let defaultConnection: Connection | undefined;

/**
 * One broker connection, shared by every producer, consumer and RPC call of a process
 * (Python opened one per object). Connects lazily, with `noDelay` (Nagle turned a 0.5 ms RPC
 * into 44 ms here), and reconnects by itself over the whole node list.
 *
 * Reconnection is done here, not with amqplib's `recovery` option: that one reconnects only
 * to the URL that first worked, with no connect timeout, so a cluster whose node went away
 * (or a black-holed host, which stalls for the OS's SYN timeout) was never left for another.
 * Each round tries every node, starting after the one that failed, each with
 * `connectTimeout`; rounds are separated by a capped exponential backoff with jitter, and
 * each failed attempt is logged once. After a reconnect it emits `reconnect`; channel owners
 * open new channels and declare their topology again.
 */
export class Connection extends EventEmitter<ConnectionEvents> {
  /** Every node, in failover order. */
  readonly targets: readonly BrokerTarget[];
  readonly options: Readonly<ConnectionOptions>;
  readonly logger: Logger;
  /** The host name fingerprints and addresses made on this connection use. */
  readonly identity: { readonly host: string };
  /** Signed control commands, when configured (see ConnectionOptions.signing). */
  readonly signing: { readonly secrets: ReadonlyArray<string | Buffer>; readonly maxAgeMs: number; readonly nonces: NonceStore } | undefined;
  /** How many times a connection was established (1 after the first). */
  generation = 0;
  /** True while the broker has told us it blocks publishers (memory or disk alarm). */
  blocked = false;
  #state: ConnectionState = 'idle';
  #model: ChannelModel | undefined;
  /** Index in `targets` of the node connected to (or last tried). */
  #current = -1;
  /** Resolves with the model once connected; rejects when given up or closed. */
  #waiting: { promise: Promise<ChannelModel>; resolve: (m: ChannelModel) => void; reject: (e: Error) => void } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;
  #closeReason: string | undefined;
  #replyLanes: ReplyLanes | undefined;
  #publisher: Publisher | undefined;
  /** Exchanges declared on this connection (cleared at each reconnect). */
  readonly #declared = new Map<string, Promise<void>>();
  /** Those of them whose declaration is done. */
  readonly #declaredDone = new Set<string>();

  constructor(options: ConnectionOptions = {}) {
    super();
    this.options = { ...options };
    this.logger = options.logger ?? defaultLogger(debugMode(options.env));
    const { targets, warnings } = resolveBroker(options, { ...(options.env ? { env: options.env } : {}), ...(options.override ? { override: options.override } : {}) });
    if (targets.length === 0) throw new PostageError('POSTAGE_ERR_INVALID_ARGUMENT', 'no broker URL or host given', { key: 'url' });
    this.targets = targets;
    this.identity = Object.freeze({ host: options.identity?.host || localHostname(options.env) });
    const secrets = options.signing?.secrets ?? signingEnv(options.env);
    if (secrets !== undefined && secrets.length === 0) throw new PostageError('POSTAGE_ERR_INVALID_ARGUMENT', 'signing: at least one secret is needed', { key: 'signing.secrets' });
    const maxAgeMs = options.signing?.maxAgeMs ?? 60_000;
    this.signing = secrets === undefined ? undefined : Object.freeze({ secrets: [...secrets], maxAgeMs, nonces: new NonceStore(maxAgeMs) });
    warnDeprecated(warnings);
  }

  /**
   * The process's default connection: the one `setDefault()` installed (the daemon's), else
   * one made from the environment on first use. Producers and consumers created without a
   * connection use it.
   */
  static shared(): Connection {
    if (!defaultConnection || defaultConnection.closed) defaultConnection = new Connection();
    return defaultConnection;
  }

  /**
   * Makes `connection` what `Connection.shared()` returns, e.g. the daemon's own connection,
   * so that a plugin's `new GenericProducer()` talks to the broker the daemon was configured
   * with. `undefined` forgets it.
   */
  static setDefault(connection: Connection | undefined): void {
    defaultConnection = connection;
  }

  /** Closes the default connection (tests, shutdown). */
  static async closeAll(reason = 'closeAll'): Promise<void> {
    const c = defaultConnection;
    defaultConnection = undefined;
    await c?.close(reason);
  }

  get state(): ConnectionState {
    return this.#state;
  }

  get closed(): boolean {
    return this.#state === 'closed';
  }

  /** Why the connection was closed (`quit`, `restart`, …), if it was. */
  get closeReason(): string | undefined {
    return this.#closeReason;
  }

  /** The node in use (or the first), as logs show it: no password. */
  get displayUrl(): string {
    const t = this.targets[Math.max(0, this.#current)] ?? this.targets[0];
    return t ? displayTarget(t) : '';
  }

  /** The virtual host; fingerprints report it. */
  get vhost(): string {
    return (this.targets[Math.max(0, this.#current)] ?? this.targets[0])?.vhost ?? '/';
  }

  /** The channels RPC calls wait for their replies on (one call each). @internal */
  get replyLanes(): ReplyLanes {
    this.#replyLanes ??= new ReplyLanes(this, { max: this.options.maxReplyChannels ?? 256, logger: this.logger });
    return this.#replyLanes;
  }

  /** The confirm channel every producer of this connection publishes through. @internal */
  get publisher(): Publisher {
    this.#publisher ??= new Publisher(this, this.logger);
    return this.#publisher;
  }

  /**
   * Declares `exchange` once per connection (again after a reconnect), on a channel of its
   * own so that a refusal (a type clash) closes nothing shared. Concurrent callers share one
   * declaration; a failed one is forgotten, so the next use tries again.
   */
  declareExchange(exchange: ExchangeClass): Promise<void> {
    if (exchange.name === '') return Promise.resolve(); // the default exchange always exists
    let done = this.#declared.get(exchange.name);
    if (!done) {
      // A user with no configure permission on it (an operator, least privilege) may still
      // publish to an exchange that exists: a refused declaration falls back to checking it.
      done = this.withChannel((ch) => exchange.declare(ch)).catch((err: unknown) => {
        if ((err as { code?: number }).code !== 403) throw err;
        return this.withChannel(async (ch) => {
          await ch.checkExchange(exchange.name);
        }).catch(() => Promise.reject(err));
      });
      this.#declared.set(exchange.name, done);
      done.then(
        () => {
          if (this.#declared.get(exchange.name) === done) this.#declaredDone.add(exchange.name);
        },
        () => {
          if (this.#declared.get(exchange.name) === done) this.#declared.delete(exchange.name);
        },
      );
    }
    return done;
  }

  /**
   * True once `exchange` is declared on this connection (until the next reconnect): a
   * publish can go out in the same turn instead of awaiting `declareExchange()`.
   * @internal
   */
  isDeclared(exchange: ExchangeClass): boolean {
    return exchange.name === '' || this.#declaredDone.has(exchange.name);
  }

  /** The only transition function of the connection's state. */
  #to(next: ConnectionState): void {
    this.#state = next;
  }

  /** Connects if needed and resolves once connected (after an outage: once connected again). */
  ready(): Promise<ChannelModel> {
    if (this.#state === 'closed') return Promise.reject(new ClosedError('connection', this.#closeReason ?? 'closed'));
    if (this.#state === 'connected' && this.#model) return Promise.resolve(this.#model);
    if (!this.#waiting) {
      let resolve!: (m: ChannelModel) => void;
      let reject!: (e: Error) => void;
      const promise = new Promise<ChannelModel>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.#waiting = { promise, resolve, reject };
    }
    if (this.#state === 'idle') {
      this.#to('connecting');
      void this.#round(1);
    }
    return this.#waiting.promise;
  }

  async createChannel(): Promise<Channel> {
    const model = await this.ready();
    return model.createChannel().catch((err: unknown) => this.#refusedChannel(model, err, () => this.createChannel()));
  }

  async createConfirmChannel(): Promise<ConfirmChannel> {
    const model = await this.ready();
    return model.createConfirmChannel().catch((err: unknown) => this.#refusedChannel(model, err, () => this.createConfirmChannel()));
  }

  /**
   * A channel refused because the connection is closed, while we hold it for open: its
   * 'close' came before we listened. amqplib wraps the connection in a ChannelModel one
   * promise turn after the handshake; a close frame read in the same chunk as the handshake's
   * last one (a broker that closes connections as soon as they open) is emitted in between,
   * and the connection stayed "connected" to a dead model for good. Lost, then: reconnect,
   * and open the channel once connected again, as if the loss had been seen in time.
   */
  #refusedChannel<T>(model: ChannelModel, err: unknown, again: () => Promise<T>): Promise<T> {
    if (!(err instanceof amqp.IllegalOperationError && /^Connection clos/.test(err.message) && this.#model === model && this.#state === 'connected')) throw err;
    this.#onLost(model, err);
    return again();
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

  /** One round over every node, starting after the one connected to (or last tried). */
  async #round(round: number): Promise<void> {
    const errors: string[] = [];
    let refusals = 0;
    for (let i = 1; i <= this.targets.length; i++) {
      if (this.closed) return;
      const index = (this.#current + i) % this.targets.length;
      const target = this.targets[index] as BrokerTarget;
      try {
        const model = await this.#connectTo(target);
        if (this.closed) {
          await model.close().catch(() => undefined);
          return;
        }
        this.#current = index;
        this.#attach(model, target);
        return;
      } catch (err) {
        this.#current = index;
        if (isRefusal(err)) refusals++;
        const reason = describeConnectError(err, target);
        errors.push(`${displayTarget(target)}: ${reason}`);
        this.logger.warn('broker connection attempt failed', { target: displayTarget(target), round, reason });
      }
    }
    if (this.closed) return;
    const initial = this.generation === 0;
    const attempts = Math.max(1, this.options.connectAttempts ?? 1);
    if (initial && round >= attempts) {
      const tried = this.targets.map(displayTarget);
      const err = new PostageError('POSTAGE_ERR_BROKER_UNREACHABLE', `broker unreachable at ${tried.join(', ')} (${errors.at(-1) ?? 'no attempt'})`, { urls: tried });
      this.#to('idle'); // a later ready() tries again
      this.#settleWaiting(err);
      return;
    }
    if (!initial && this.options.reconnect === false) {
      this.#fail(new Error(`lost the broker connection and reconnect is off (${errors.at(-1) ?? ''})`));
      return;
    }
    // A broker that refuses us (credentials, permissions on the vhost) is not going to change
    // its mind within milliseconds: at most one round a second then, not the quick first steps.
    const delay = this.#backoff(round, refusals === this.targets.length ? REFUSED_MIN_DELAY_MS : 0);
    this.logger.info('broker unreachable: trying every node again', { inMs: delay, round: round + 1, nodes: this.targets.length });
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#round(round + 1);
    }, delay);
  }

  #backoff(round: number, floor = 0): number {
    const initial = this.options.reconnectDelay?.initial ?? 100;
    const max = this.options.reconnectDelay?.max ?? 5000;
    return Math.max(floor, Math.round(Math.min(max, initial * 2 ** (round - 1)) * (0.8 + Math.random() * 0.4)));
  }

  #connectTo(target: BrokerTarget): Promise<ChannelModel> {
    const tls = target.tls;
    const socket: Record<string, unknown> = {
      noDelay: true,
      timeout: this.options.connectTimeout ?? 5000,
      clientProperties: { connection_name: this.options.clientName ?? `postage ${process.pid}` },
      credentials: tls?.external ? amqp.credentials.external() : amqp.credentials.plain(target.user, target.password),
    };
    if (tls) {
      // Read at each connection: a rotated certificate is picked up by the next reconnect.
      if (tls.ca !== undefined) socket['ca'] = (typeof tls.ca === 'string' ? [tls.ca] : [...tls.ca]).map((f) => readFileSync(f));
      if (tls.cert !== undefined) socket['cert'] = readFileSync(tls.cert);
      if (tls.key !== undefined) socket['key'] = readFileSync(tls.key);
      if (tls.servername !== undefined) socket['servername'] = tls.servername;
      socket['rejectUnauthorized'] = true; // never accept an unverified broker, whatever the environment says
    }
    const url = {
      protocol: target.protocol,
      hostname: target.hostname,
      port: target.port,
      vhost: target.vhost,
      heartbeat: target.heartbeat ?? this.options.heartbeat ?? 10,
      ...(target.frameMax !== undefined ? { frameMax: target.frameMax } : {}),
      ...(target.channelMax !== undefined ? { channelMax: target.channelMax } : {}),
    };
    return amqp.connect(url, socket);
  }

  #attach(model: ChannelModel, target: BrokerTarget): void {
    this.#model = model;
    this.generation++;
    this.blocked = false;
    this.#to('connected');
    const shown = displayTarget(target);
    if (this.generation === 1) this.logger.debug('connected to broker', { url: shown });
    else this.logger.info('reconnected to broker', { url: shown, generation: this.generation });
    model.on('close', (err?: Error) => this.#onLost(model, err));
    this.#watchSilence(model);
    // Without a listener an 'error' event would throw; the 'close' that follows drives reconnection.
    model.on('error', (err: Error) => this.logger.warn('broker connection error', { reason: err.message }));
    model.on('blocked', (reason: string) => {
      this.blocked = true;
      this.logger.warn('broker blocks publishing', { reason });
      this.emit('blocked', true, reason);
    });
    model.on('unblocked', () => {
      this.blocked = false;
      this.logger.info('broker unblocked publishing');
      this.emit('blocked', false);
    });
    this.#declared.clear();
    this.#declaredDone.clear();
    this.#settleWaiting(model);
    this.emit('connect', this.generation, shown);
    if (this.generation > 1) this.emit('reconnect', this.generation);
  }

  /**
   * Declares the connection dead after two heartbeat intervals with no byte from the broker
   * (AMQP's rule), checked twice a second. amqplib's own check runs once per interval and
   * needs two missed intervals after one seen, so a black-holed connection (no FIN, no RST:
   * a dead route, a frozen peer) was noticed only 2–3 intervals late (up to 15 s at 5 s; fault
   * #4 asks 12). A loop blocked past the limit is not taken for silence: the bytes waiting in
   * the socket are read after the timers, so the count restarts after such a gap.
   */
  #watchSilence(model: ChannelModel): void {
    const amqpConnection = model.connection as unknown as { heartbeat?: number; stream?: { bytesRead?: number; destroy(err?: Error): void } };
    const socket = amqpConnection.stream;
    const heartbeat = amqpConnection.heartbeat ?? 0;
    if (!socket || !(heartbeat > 0) || typeof socket.bytesRead !== 'number') return;
    const limitMs = 2 * heartbeat * 1000;
    const tickMs = Math.max(50, Math.min(500, limitMs / 20));
    let bytes = socket.bytesRead;
    let since = performance.now();
    let tick = since;
    const timer = setInterval(() => {
      const now = performance.now();
      const read = socket.bytesRead ?? 0;
      const gap = now - tick;
      tick = now;
      if (read !== bytes || gap > 4 * tickMs) {
        bytes = read;
        since = now;
        return;
      }
      if (now - since < limitMs) return;
      clearInterval(timer);
      if (this.#model !== model) return;
      socket.destroy(new Error(`no data from the broker for ${Math.round((now - since) / 1000)} s (heartbeat ${heartbeat} s): connection presumed dead`));
    }, tickMs);
    timer.unref();
    model.once('close', () => clearInterval(timer));
  }

  #onLost(model: ChannelModel, err: Error | undefined): void {
    if (this.#model !== model || this.#state === 'closed') return;
    this.#model = undefined;
    const error = err ?? new Error('connection closed');
    this.logger.warn('lost the broker connection', { url: this.displayUrl, reason: error.message });
    if (this.blocked) {
      this.blocked = false;
      this.emit('blocked', false);
    }
    this.#to('reconnecting');
    this.emit('disconnect', error);
    void this.#round(1);
  }

  #settleWaiting(result: ChannelModel | Error): void {
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (!waiting) return;
    if (result instanceof Error) {
      waiting.promise.catch(() => undefined);
      waiting.reject(result);
    } else waiting.resolve(result);
  }

  #fail(err: Error): void {
    this.logger.error('gave up on the broker connection', { reason: err.message });
    this.emit('failed', err);
    void this.close('broker lost');
  }

  /** Closes the connection (idempotent; concurrent callers share one promise). */
  close(reason = 'closed'): Promise<void> {
    this.#closing ??= (async () => {
      this.#closeReason = reason;
      this.#to('closed');
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#settleWaiting(new ClosedError('connection', reason));
      const model = this.#model;
      this.#model = undefined;
      this.emit('close', reason);
      await this.#replyLanes?.close(reason);
      await this.#publisher?.close(reason);
      if (model) await model.close().catch(() => undefined);
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close('disposed');
  }
}
brand(Connection, 'Connection');

const warned = new Set<string>();

/** Node's standard deprecation channel, once per variable per process (shown on stderr unless --no-deprecation). */
function warnDeprecated(warnings: readonly string[]): void {
  for (const w of warnings) {
    if (warned.has(w)) continue;
    warned.add(w);
    process.emitWarning(w, { type: 'DeprecationWarning', code: 'POSTAGE_DEP_ENV' });
  }
}

/** TLS verification failures Node reports, by code. */
const TLS_CODES = new Set([
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_REVOKED',
  'EPROTO',
]);

/** Least delay between rounds whose every attempt the broker refused (login, vhost access). */
const REFUSED_MIN_DELAY_MS = 1000;

/**
 * Whether the broker itself refused the connection during the handshake: a refused login
 * (`Handshake terminated by server: 403 …`) or a refused vhost, which RabbitMQ answers to
 * connection.open with a connection.close (amqplib: `Expected ConnectionOpenOk; got <ConnectionClose …>`).
 */
function isRefusal(err: unknown): boolean {
  const message = (err as Error)?.message ?? '';
  return /^Handshake terminated by server|^Expected ConnectionOpenOk; got <ConnectionClose/.test(message);
}

/** A failed attempt, said clearly: a refused TLS verification names itself as such. */
function describeConnectError(err: unknown, target: BrokerTarget): string {
  const e = err as NodeJS.ErrnoException;
  const message = e?.message ?? String(err);
  // amqplib shows the broker's close without its reason: say what it means.
  if (/^Expected ConnectionOpenOk; got <ConnectionClose/.test(message)) return `the broker refused access to vhost '${target.vhost}' for user '${target.user}' (${message})`;
  if (target.protocol === 'amqps' && (TLS_CODES.has(String(e?.code)) || /certificate|SSL|TLS/i.test(message))) {
    return `TLS refused, not connected (no plaintext fallback): ${message}${e?.code ? ` (${e.code})` : ''}`;
  }
  return message;
}
