/**
 * `postage`: the public surface of the library, what applications and plugins use. What only
 * the daemon and the CLI of this package need is in `postage/internal` (lib/internal.ts), with
 * no promise of stability.
 *
 * Names follow Python Postage where the wire or the API must stay compatible: the
 * `message_<name>()` / `rpc_<name>()` methods, their `_key`, `_eks`, `_timeout` (seconds),
 * `_max_retry`, `_queue_only` options, `eqk` / `eks`, `auto_delete` in queue flags. The typed
 * API beside them says its unit in its name where it takes one (`drainTimeout` … in ms).
 */
export { PostageError, ClosedError, FilterError, RejectMessage, ExitScheduler, ErrorCodes } from './errors.js';
export { readEnv, ENV_VARIABLES } from './env.js';
export { silentLogger } from './logger.js';
export { Fingerprint } from './wire/fingerprint.js';
export { JsonEncoder, DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH } from './wire/encoder.js';
export {
  Message,
  MessageCommand,
  RpcCommand,
  MessageStatus,
  MessageResult,
  MessageResultError,
  MessageResultException,
  messageFromBody,
  resultFromBody,
  errorToResult,
  resultToError,
} from './wire/message.js';
export { currentTrace, runWithTrace, newTrace, childSpan, parseTraceparent, formatTraceparent, TRACEPARENT_HEADER, TRACESTATE_HEADER } from './wire/trace-context.js';
export { Connection } from './amqp/connection.js';
export { Exchange, DefaultExchange } from './amqp/exchange.js';
export { GenericProducer } from './messaging/generic-producer.js';
export { GenericConsumer } from './messaging/generic-consumer.js';
export { MicroThread } from './scheduler/micro-thread.js';
export { MicroScheduler } from './scheduler/micro-scheduler.js';
export { MessageHandler, MessageHandlerFullBody, RpcHandler, MessageFilter } from './processing/handlers.js';
export { Handler } from './processing/handler.js';
export { MessageProcessor } from './processing/message-processor.js';
export { GenericApplication, GenericApplicationExchange, DeadLetterExchange } from './application/generic-application.js';
export { addressesOf, parseKey, groupKey, groupRoundRobinKey, deadLetterQueue, DEAD_LETTER_EXCHANGE, DAEMON_DISCOVERY_KEY } from './application/addressing.js';

export type { ErrorCode } from './errors.js';
export type { EnvSettings } from './env.js';
export type { Logger } from './logger.js';
export type { FingerprintDict, FingerprintOptions } from './wire/fingerprint.js';
export type { Encoder, DecodeLimits } from './wire/encoder.js';
export type { Json, MessageBody, ResultType } from './wire/message.js';
export type { BrokerSettings, TlsSettings } from './amqp/broker-address.js';
export type { TraceContext } from './wire/trace-context.js';
export type { ConnectionOptions, ConnectionState, ConnectionEvents, RpcCallEvent, RpcOutcome } from './amqp/connection.js';
export type { ExchangeClass, ExchangeParameters } from './amqp/exchange.js';
export type { QueueFlags, QueueSpec } from './amqp/queue-flags.js';
export type { ExchangeKeys, SendOptions, SendResult, RpcOptions, ProducerOptions } from './messaging/generic-producer.js';
export type { ExchangeQueueKeys, ConsumerOptions, ConsumerState, Delivery } from './messaging/generic-consumer.js';
export type { SchedulerOptions } from './scheduler/micro-scheduler.js';
export type { PostageDecorator, Route, HandlerCategory } from './processing/handlers.js';
export type { ReplyFunc } from './processing/handler.js';
export type { ProcessorOptions, ProcessorStats, ProcessorState, ProcessorEvents, LifecycleEvent, ControlEvent, DeadLetterTarget, LoopHold, MessageOutcome } from './processing/message-processor.js';
export type { ApplicationOptions } from './application/generic-application.js';
export type { TopologyMode, TopologyOptions, Addresses, Identity, KeyForm, ParsedKey } from './application/addressing.js';
export type { DaemonStatus, ApplicationStatus, MessageCounts, BrokerStatus, EventLoopStatus } from './application/daemon-status.js';
