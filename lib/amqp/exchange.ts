import type { Channel } from 'amqplib';
import { brand } from '../errors.js';

/** The AMQP parameters of an exchange, as Python's `Exchange.parameters`. */
export interface ExchangeParameters {
  exchange: string;
  exchangeType: string;
  passive: boolean;
  durable: boolean;
  autoDelete: boolean;
}

/**
 * An exchange, declared by subclassing and setting statics (Python's `Exchange`):
 *
 * ```ts
 * class LogExchange extends Exchange { static override name = 'log-exchange'; }
 * ```
 */
export class Exchange {
  /** Default: `noname`, as in Python. */
  static name: string = 'noname';
  /** Default: `direct`. */
  static exchangeType = 'direct';
  /** Default: false. A passive exchange is checked, never created. */
  static passive = false;
  /** Default: true. */
  static durable = true;
  /** Default: false. */
  static autoDelete = false;

  static get parameters(): ExchangeParameters {
    return { exchange: this.name, exchangeType: this.exchangeType, passive: this.passive, durable: this.durable, autoDelete: this.autoDelete };
  }

  /** Declares (or, when passive, checks) this exchange on `channel`. */
  static async declare(channel: Channel): Promise<void> {
    if (this.name === '') return; // the default exchange always exists and cannot be declared
    if (this.passive) await channel.checkExchange(this.name);
    else await channel.assertExchange(this.name, this.exchangeType, { durable: this.durable, autoDelete: this.autoDelete });
  }
}
brand(Exchange, 'Exchange');

/** The class type of an exchange (what `eks` and `eqk` hold). */
export type ExchangeClass = typeof Exchange;

/** The AMQP default exchange `''`, which routes by queue name (RPC replies go through it). */
export class DefaultExchange extends Exchange {
  static override name = '';
}
