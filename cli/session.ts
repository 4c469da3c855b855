/**
 * One broker session of a `postage` run: a fail-fast connection (one attempt, no
 * reconnection), a producer on the GenericApplication exchange, and the two ways the CLI
 * talks: collecting RPC replies, and publishing a fire-and-forget command.
 */
import { Connection, DAEMON_DISCOVERY_KEY, GenericApplicationExchange, GenericProducer, MessageCommand, PostageError, RpcCommand, type BrokerSettings, type MessageResult } from 'postage';
import { displayTarget, type BrokerOverride } from 'postage/internal';
import { CliError, ExitCode } from './exit-codes.js';

/** Sends to `generic-application-exchange`; every call names its key with `_key`. */
class CliProducer extends GenericProducer {
  static override eks = [[GenericApplicationExchange, DAEMON_DISCOVERY_KEY]] as const;
}

export interface CollectOptions {
  /** Seconds to wait for replies. */
  timeout: number;
  /** Return as soon as this many replies are in. Default: all within the timeout. */
  expect?: number;
}

export class Session {
  readonly connection: Connection;
  private readonly producer: CliProducer;

  /**
   * `settings` are every layer merged (file, environment): the library is told not to read
   * the environment again. A bad value (a host, a URL) is a configuration error, exit 78.
   */
  constructor(settings: BrokerSettings, override: BrokerOverride = {}, signing?: readonly string[]) {
    try {
      this.connection = new Connection({
        ...settings,
        override,
        env: {},
        ...(signing ? { signing: { secrets: signing } } : {}),
        connectAttempts: 1,
        reconnect: false,
        clientName: `postage cli ${process.pid}`,
      });
    } catch (err) {
      if (err instanceof PostageError && err.code === 'POSTAGE_ERR_INVALID_ARGUMENT') throw new CliError(ExitCode.CONFIG, `broker settings: ${err.message}`);
      throw err;
    }
    this.producer = new CliProducer({ connection: this.connection, fingerprint: { name: 'postage', type: 'cli' } });
  }

  /** Connects now, so that an unreachable broker is reported before anything else. */
  async open(): Promise<void> {
    try {
      await this.connection.ready();
    } catch (err) {
      throw this.brokerError(err);
    }
  }

  /** Sends RPC `name` to `key` once and returns every reply that came within the timeout. */
  async collect(key: string, name: string, parameters: unknown, options: CollectOptions): Promise<MessageResult[]> {
    try {
      return await this.producer.rpcCollect(new RpcCommand(name, parameters), {
        _key: key,
        _timeout: options.timeout,
        ...(options.expect === undefined ? {} : { expect: options.expect }),
      });
    } catch (err) {
      throw this.brokerError(err);
    }
  }

  /**
   * Publishes command `name` to `key` through the library's producer (so it carries a
   * `message_id` and the time it was sent, which the daemon's exactly-once control relies
   * on) and resolves once the broker has confirmed it. Returns false when no queue is bound
   * to the key (nobody would ever receive it).
   */
  async command(key: string, name: string, parameters: unknown): Promise<boolean> {
    try {
      const { routed } = await this.producer.send(new MessageCommand(name, parameters), { _key: key });
      return routed;
    } catch (err) {
      throw this.brokerError(err);
    }
  }

  /** Closes the connection (so the process can exit at once). */
  async close(): Promise<void> {
    await this.connection.close('postage cli done');
  }

  /** An unreachable broker becomes exit 69 naming the nodes tried (without a password). */
  private brokerError(err: unknown): unknown {
    if (err instanceof PostageError && err.code === 'POSTAGE_ERR_BROKER_UNREACHABLE') return new CliError(ExitCode.UNAVAILABLE, err.message);
    if (err instanceof PostageError && (err.code === 'POSTAGE_ERR_CLOSED' || err.code === 'POSTAGE_ERR_PUBLISH')) {
      return new CliError(ExitCode.UNAVAILABLE, `lost the broker connection to ${this.connection.targets.map(displayTarget).join(', ')}`);
    }
    return err;
  }
}
