/**
 * One broker session of a `postage` run: a fail-fast connection (one attempt, no
 * reconnection), a producer on the GenericApplication exchange, and the two ways the CLI
 * talks: collecting RPC replies, and publishing a fire-and-forget command.
 */
import {
  Connection,
  DAEMON_DISCOVERY_KEY,
  GenericApplicationExchange,
  GenericProducer,
  JsonEncoder,
  MessageCommand,
  PostageError,
  RpcCommand,
  redactUrl,
  type MessageResult,
} from 'postage';
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

  constructor(readonly urls: readonly string[]) {
    this.connection = new Connection({ url: urls, connectAttempts: 1, reconnect: false, clientName: `postage cli ${process.pid}` });
    this.producer = new CliProducer({ connection: this.connection, fingerprint: { name: 'postage', type: 'cli' } });
  }

  /** Connects now, so that an unreachable broker is reported before anything else. */
  async open(): Promise<void> {
    try {
      await this.connection.ready();
    } catch (err) {
      throw brokerError(err, this.urls);
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
      throw brokerError(err, this.urls);
    }
  }

  /**
   * Publishes command `name` to `key` and resolves once the broker has confirmed it.
   * Returns false when no queue is bound to the key (nobody would ever receive it).
   * The producer's `send()` cannot tell: it publishes without `mandatory`, so this uses
   * its own confirm channel with `mandatory` and listens for the broker's basic.return,
   * which RabbitMQ sends before the confirm of an unroutable message.
   */
  async command(key: string, name: string, parameters: unknown): Promise<boolean> {
    try {
      const ch = await this.connection.createConfirmChannel();
      try {
        await GenericApplicationExchange.declare(ch);
        let routed = true;
        ch.on('return', () => {
          routed = false;
        });
        const message = new MessageCommand(name, parameters).setFingerprint(this.producer.fingerprint);
        const encoder = new JsonEncoder();
        await new Promise<void>((resolve, reject) => {
          ch.publish(GenericApplicationExchange.name, key, encoder.encode(message.body), { contentType: encoder.contentType, persistent: true, mandatory: true }, (err) =>
            err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(),
          );
        });
        return routed;
      } finally {
        await ch.close().catch(() => undefined);
      }
    } catch (err) {
      throw brokerError(err, this.urls);
    }
  }

  /** Closes the connection (so the process can exit at once). */
  async close(): Promise<void> {
    await this.connection.close('postage cli done');
  }
}

/** An unreachable broker becomes exit 69 naming the URL tried (without its password). */
function brokerError(err: unknown, urls: readonly string[]): unknown {
  if (err instanceof PostageError && err.code === 'POSTAGE_ERR_BROKER_UNREACHABLE') return new CliError(ExitCode.UNAVAILABLE, err.message);
  if (err instanceof PostageError && err.code === 'POSTAGE_ERR_CLOSED') {
    return new CliError(ExitCode.UNAVAILABLE, `lost the broker connection to ${urls.map(redactUrl).join(', ')}`);
  }
  return err;
}
