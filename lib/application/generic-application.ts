import { brand } from '../errors.js';
import { Connection } from '../amqp/connection.js';
import { Exchange } from '../amqp/exchange.js';
import type { QueueSpec } from '../amqp/queue-flags.js';
import { Fingerprint } from '../wire/fingerprint.js';
import { MessageResult } from '../wire/message.js';
import { MessageHandler, RpcHandler } from '../processing/handlers.js';
import type { ReplyFunc } from '../processing/handler.js';
import { MessageProcessor, type ProcessorOptions } from '../processing/message-processor.js';
import {
  addressesOf,
  applicationBindings,
  checkName,
  DEAD_LETTER_EXCHANGE,
  deadLetterQueue,
  groupKey,
  uniqueQueueSpec,
  type Addresses,
  type TopologyOptions,
} from './addressing.js';

/** The exchange every GenericApplication binds to: direct, durable. */
export class GenericApplicationExchange extends Exchange {
  static override name = 'generic-application-exchange';
  static override exchangeType = 'direct';
  static override durable = true;
  static override autoDelete = false;
}

/** Where failed messages go: one direct exchange, one queue per application name. */
export class DeadLetterExchange extends Exchange {
  static override name = DEAD_LETTER_EXCHANGE;
}

/** Options of `new GenericApplication()`. */
export interface ApplicationOptions extends Omit<ProcessorOptions, 'fingerprint' | 'eqk' | 'deadLetter'> {
  /** Default: `static appName`, else the class name. */
  name?: string;
  /** Default: `POSTAGE_HOSTNAME`, else the OS host name. */
  host?: string;
  /** Default: `process.pid`. Mostly for tests. */
  pid?: number;
  /** Groups joined at start. Default: `static groups`, else none. */
  groups?: readonly string[];
  /** Queue flags and mode. */
  topology?: TopologyOptions;
  /** More routing keys bound to the unique queue (the daemon binds `#daemons` for discovery). */
  extraKeys?: readonly string[];
  /** Free options for the application itself (the daemon passes per-plugin options here). */
  settings?: Record<string, unknown>;
}

/**
 * An addressable application (Python's `GenericApplication`, SPEC §3): a MessageProcessor
 * with queues and keys by name, host, process and group. Answers RPC `ping` with its
 * fingerprint and handles `join_group` / `leave_group`.
 */
export class GenericApplication extends MessageProcessor {
  /** The application's name; the daemon uses it, else the plugin file's base name. */
  static appName: string | undefined;
  /** Groups joined at start when the options give none. */
  static groups: readonly string[] = [];
  static exchangeClass: typeof Exchange = GenericApplicationExchange;

  readonly name: string;
  readonly host: string;
  readonly addresses: Addresses;
  readonly topology: TopologyOptions;
  readonly settings: Readonly<Record<string, unknown>>;
  groups: string[];

  constructor(options: ApplicationOptions = {}) {
    const statics = new.target as unknown as typeof GenericApplication;
    const name = checkName('name', options.name ?? statics.appName ?? new.target.name);
    const connection = options.connection ?? Connection.shared();
    const fingerprint = new Fingerprint({
      name,
      type: 'application',
      vhost: connection.vhost,
      ...(options.host ? { host: options.host } : {}),
      ...(options.pid ? { pid: options.pid } : {}),
    });
    checkName('host', fingerprint.host);
    const groups = [...(options.groups ?? statics.groups)].map((g) => checkName('group', g));
    const id = { name, host: fingerprint.host, pid: fingerprint.pid };
    const topology = options.topology ?? {};
    super({
      ...options,
      connection,
      fingerprint,
      eqk: [
        [
          statics.exchangeClass,
          [...applicationBindings(id, groups, topology), ...(options.extraKeys ?? []).map((key): [QueueSpec, string] => [uniqueQueueSpec(id, topology), key])],
        ],
      ],
      deadLetter: { exchange: DeadLetterExchange, routingKey: name },
    });
    this.name = name;
    this.host = fingerprint.host;
    this.groups = groups;
    this.topology = topology;
    this.addresses = addressesOf(id);
    this.settings = Object.freeze({ ...(options.settings ?? {}) });
  }

  private get identity(): { name: string; host: string; pid: string } {
    return { name: this.name, host: this.host, pid: this.fingerprint.pid };
  }

  /** Queue names this application reads. */
  get queues(): string[] {
    return this.consumer.queueNames;
  }

  /** Declares the dead-letter queue, then starts consuming. */
  override async create(): Promise<void> {
    const ch = await this.consumer.getChannel();
    await DeadLetterExchange.declare(ch);
    const dlq = deadLetterQueue(this.name);
    await ch.assertQueue(dlq, { durable: true });
    await ch.bindQueue(dlq, DeadLetterExchange.name, this.name);
    await super.create();
  }

  /** Joins a group at run time: binds `N#G` to the unique queue (fan-out only, as in Python). */
  async joinGroup(group: string): Promise<void> {
    checkName('group', group);
    if (this.groups.includes(group)) return;
    const statics = this.constructor as typeof GenericApplication;
    await this.consumer.queueBind(statics.exchangeClass, uniqueQueueSpec(this.identity, this.topology), groupKey(this.name, group));
    this.groups.push(group);
    this.logger.info('joined group', { group });
  }

  /**
   * Leaves a group: unbinds `N#G` from the unique queue. If the group was given at start, this
   * instance also stops consuming the shared queue `N#G`; its `N#G/rr` binding stays, since the
   * other members still use it.
   */
  async leaveGroup(group: string): Promise<void> {
    if (!this.groups.includes(group)) return;
    const statics = this.constructor as typeof GenericApplication;
    await this.consumer.queueUnbind(statics.exchangeClass, uniqueQueueSpec(this.identity, this.topology), groupKey(this.name, group)).catch(() => undefined);
    const shared = groupKey(this.name, group);
    if (this.consumer.queueNames.includes(shared)) await this.consumer.stopConsuming(shared);
    this.groups = this.groups.filter((g) => g !== group);
    this.logger.info('left group', { group });
  }

  /** On `quit` the unique queue goes with the application; on restart it stays for the next generation. */
  protected override async beforeChannelClose(reason: string): Promise<void> {
    if (reason === 'quit') await this.consumer.deleteQueue(this.addresses.uid);
  }

  @RpcHandler('command', 'ping')
  msgPing(_content: unknown, reply: ReplyFunc): Promise<void> {
    return reply(new MessageResult(this.fingerprint));
  }

  @MessageHandler('command', 'join_group')
  async msgJoinGroup(content: { parameters?: { group_name?: unknown } }): Promise<void> {
    await this.joinGroup(String(content.parameters?.group_name));
  }

  @MessageHandler('command', 'leave_group')
  async msgLeaveGroup(content: { parameters?: { group_name?: unknown } }): Promise<void> {
    await this.leaveGroup(String(content.parameters?.group_name));
  }
}
brand(GenericApplication, 'GenericApplication');
