/**
 * `postage`: the public surface of the library. Nothing else is public.
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
  validateBody,
  errorToResult,
  resultToError,
} from './wire/message.js';
export { Connection, redactUrl } from './amqp/connection.js';
export { Exchange, DefaultExchange } from './amqp/exchange.js';
export { GenericProducer } from './messaging/generic-producer.js';
export { GenericConsumer } from './messaging/generic-consumer.js';
export { MicroThread } from './scheduler/micro-thread.js';
export { MicroScheduler } from './scheduler/micro-scheduler.js';
export { MessageHandler, MessageHandlerFullBody, RpcHandler, MessageFilter } from './processing/handlers.js';
export { Handler } from './processing/handler.js';
export { MessageProcessor } from './processing/message-processor.js';
export { setRestartHook, getRestartHook } from './processing/restart-hook.js';
export { GenericApplication, GenericApplicationExchange, DeadLetterExchange } from './application/generic-application.js';
export {
  addressesOf,
  applicationBindings,
  queueFlags,
  groupKey,
  groupRoundRobinKey,
  deadLetterQueue,
  checkName,
  DEAD_LETTER_EXCHANGE,
  DAEMON_DISCOVERY_KEY,
} from './application/addressing.js';

export type { ErrorCode } from './errors.js';
export type { EnvSettings } from './env.js';
export type { Logger } from './logger.js';
export type { FingerprintDict, FingerprintOptions } from './wire/fingerprint.js';
export type { Encoder, DecodeLimits } from './wire/encoder.js';
export type { Json, MessageBody, ResultType } from './wire/message.js';
export type { ConnectionOptions } from './amqp/connection.js';
export type { ExchangeClass, ExchangeParameters } from './amqp/exchange.js';
export type { QueueFlags, QueueSpec } from './amqp/queue-flags.js';
export type { ExchangeKeys, SendOptions, RpcOptions, ProducerOptions } from './messaging/generic-producer.js';
export type { ExchangeQueueKeys, ConsumerOptions, Delivery } from './messaging/generic-consumer.js';
export type { SchedulerOptions } from './scheduler/micro-scheduler.js';
export type { PostageDecorator, Route, HandlerCategory } from './processing/handlers.js';
export type { ReplyFunc } from './processing/handler.js';
export type { ProcessorOptions, ProcessorStats, LifecycleEvent, DeadLetterTarget } from './processing/message-processor.js';
export type { RestartHook } from './processing/restart-hook.js';
export type { ApplicationOptions } from './application/generic-application.js';
export type { TopologyMode, TopologyOptions, Addresses, Identity } from './application/addressing.js';
export type { DaemonStatus, ApplicationStatus, MessageCounts } from './application/daemon-status.js';
