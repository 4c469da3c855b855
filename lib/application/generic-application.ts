import { brand, PostageError, RejectMessage } from '../errors.js';
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
  deadLetterQueueSpec,
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
export interface ApplicationOptions extends Omit<ProcessorOptions, 'fingerprint' | 'eqk' | 'deadLetter' | 'declareOnly'> {
  /** Default: `static appName`, else the class name. */
  name?: string;
  /** Default: the connection's identity (`POSTAGE_HOSTNAME`, else the OS host name). */
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
      host: options.host || connection.identity.host,
      ...(options.pid ? { pid: options.pid } : {}),
    });
    checkName('host', fingerprint.host);
    const groups = [...(options.groups ?? statics.groups)].map((g) => checkName('group', g));
    const id = { name, host: fingerprint.host, pid: fingerprint.pid };
    const topology = options.topology ?? {};
    const dlq = deadLetterQueueSpec(name, topology);
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
      // Declared again with the rest at every re-open of the channel, and when found missing.
      declareOnly: [[DeadLetterExchange, [[dlq, name]]]],
      deadLetter: { exchange: DeadLetterExchange, routingKey: name, queue: dlq },
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
    checkName('group', group);
    if (!this.groups.includes(group)) return;
    const statics = this.constructor as typeof GenericApplication;
    await this.consumer.queueUnbind(statics.exchangeClass, uniqueQueueSpec(this.identity, this.topology), groupKey(this.name, group)).catch(() => undefined);
    const shared = groupKey(this.name, group);
    if (this.consumer.queueNames.includes(shared)) await this.consumer.stopConsuming(shared);
    this.groups = this.groups.filter((g) => g !== group);
    this.logger.info('left group', { group });
  }

  /**
   * A queue refused for its flags: say which topology setting declared them (the queue type, or
   * the mode and which one Python Postage's are).
   */
  protected override explainStartError(error: unknown): unknown {
    if (!(error instanceof PostageError) || error.code !== 'POSTAGE_ERR_TOPOLOGY') return error;
    const mode = this.topology.mode ?? 'durable';
    const quorum = this.topology.quorum ?? false;
    const hint =
      error.details['arg'] === 'x-queue-type'
        ? `This application declares ${quorum ? 'quorum queues (topology.quorum on)' : 'classic queues (topology.quorum off)'}; the queue on the broker is of the other type, and RabbitMQ cannot change a queue's type`
        : mode === 'durable'
        ? "This application uses topology mode 'durable' (durable, expiring, dead-lettered queues); a queue that is not durable and auto-delete was declared by Python Postage 1.2.1, or in topology mode 'postage'"
        : "This application uses topology mode 'postage' (Python Postage 1.2.1's flags: not durable, auto-delete); a durable queue with arguments was declared in topology mode 'durable'";
    return new PostageError('POSTAGE_ERR_TOPOLOGY', `${error.message}. ${hint}`, { ...error.details, mode, quorum }, { cause: error.cause });
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
  async msgJoinGroup(content: { parameters?: unknown }): Promise<void> {
    await this.joinGroup(groupNameOf(content, 'join_group'));
  }

  @MessageHandler('command', 'leave_group')
  async msgLeaveGroup(content: { parameters?: unknown }): Promise<void> {
    await this.leaveGroup(groupNameOf(content, 'leave_group'));
  }
}
brand(GenericApplication, 'GenericApplication');

/** `parameters.group_name` of a join/leave command; a missing or unusable one rejects the message (dead-lettered, named). */
function groupNameOf(content: { parameters?: unknown }, command: string): string {
  const p = content.parameters;
  const name = p !== null && typeof p === 'object' ? (p as Record<string, unknown>)['group_name'] : undefined;
  try {
    if (typeof name !== 'string') throw new Error(`parameters.group_name is missing (got ${JSON.stringify(p) ?? 'nothing'})`);
    return checkName('group_name', name);
  } catch (err) {
    throw new RejectMessage(`${command}: ${(err as Error).message}`);
  }
}
