/**
 * `postage/internal`: what the daemon (`postaged`) and the CLI (`postage`) of this package
 * need from the library beyond its public surface. Not for applications: these names may
 * change in any release.
 */
export { brokerEnv, debugMode, splitList, signingEnv, readSigningKeys, BROKER_DEFAULTS } from './env.js';
export { canonicalJson, signBody, verifyBody, isControl, NonceStore, CONTROL_COMMANDS } from './wire/signature.js';
export { resolveBroker, displayTarget, parseHost, redactUrl } from './amqp/broker-address.js';
export { validateBody } from './wire/message.js';
export { SENT_AT_HEADER } from './messaging/generic-producer.js';
export { ATTEMPT_HEADER } from './processing/settlement.js';
export { applicationBindings, queueFlags, queueRole, checkName, reachesWholeProcess } from './application/addressing.js';
export { normalizeQueue, describeFlags, explainDeclareError } from './amqp/queue-flags.js';

export type { EnvBrokerSettings } from './env.js';
export type { BrokerTarget, BrokerOverride, ResolvedBroker } from './amqp/broker-address.js';
export type { QueueRole } from './application/addressing.js';
