/**
 * The value a `postaged` daemon answers to RPC `status` (inside `MessageResult(value)`): a wire
 * contract between the daemon and whoever reads it (the `postage` CLI, monitoring), kept here
 * so both sides are typed by one declaration.
 */
import type { ProcessorStats } from '../processing/message-processor.js';

/** Message counters of one application, as `status` reports them. */
export type MessageCounts = Omit<ProcessorStats, 'invalid' | 'refused'>;

/** One application of a daemon. */
export interface ApplicationStatus {
  name: string;
  /** The plugin file; null for the daemon's own application. */
  file: string | null;
  /** `starting`, `running`, `stopping`, `stopped` or `failed` (a string: readers must tolerate newer states). */
  state: string;
  groups: string[];
  queues: string[];
  counts: MessageCounts;
  /** Messages refused before any handler, per reason (`decode`, `too-large`, …, `redelivered`). Since postaged 0.2. */
  invalid?: Record<string, number>;
  /** Control commands refused (signing on), per reason (`unsigned`, `bad-signature`, `stale`, `replayed`). Since postaged 0.2. */
  refused?: Record<string, number>;
  /** Only when `state` is `failed`. */
  error?: string;
  /** Why it is in its state, when that needs saying (quit, disabled, quarantined, recovering, a change that does not load). */
  reason?: string;
}

/** The daemon's broker connection, as `status` reports it. */
export interface BrokerStatus {
  /** The node in use (no password). */
  url: string;
  /** `connected`, `connecting`, `reconnecting`, … */
  state: string;
  /** The broker blocks publishing (memory or disk alarm). */
  blocked: boolean;
  /** Connections made so far (1 after the first). */
  connections: number;
}

/** The daemon's event loop, as `status` reports it. */
export interface EventLoopStatus {
  /** Largest delay of the event loop over the last minute, in ms. */
  maxLagMs: number;
  /** The last long block: how long, when, and the application (and handler) that held the loop, when known. */
  lastBlock: { ms: number; at: string; application: string | null; handler: string | null } | null;
}

/** A daemon's process and every application it runs. */
export interface DaemonStatus {
  name: string;
  pid: number;
  host: string;
  version: string;
  /** Seconds since the first generation started. */
  uptime: number;
  generation: number;
  restarts: number;
  lastRestartReason: string | null;
  /** ISO time the first generation started. */
  startedAt: string;
  /** CPU percent of one core since the previous `status` (the first: since the process started). */
  cpu: number;
  /** Resident set size in bytes. */
  memory: number;
  pluginDir: string;
  /** Since postaged 0.2. */
  broker?: BrokerStatus;
  /** Since postaged 0.2. */
  eventLoop?: EventLoopStatus;
  applications: ApplicationStatus[];
}
