/**
 * The daemon's Prometheus metrics, with prom-client (the library itself knows nothing of
 * Prometheus: it keeps counters and emits events, and this module turns them into metrics).
 *
 * Where each number comes from, and what it costs a message:
 * - message counters: each processor's `stats`, read when Prometheus scrapes (collect
 *   functions): nothing per message;
 * - handler durations: the processor's `settled` event, one histogram observation per
 *   message on a labelled child made once per (application, category, outcome);
 * - RPC calls: the connection's `rpc` event, one per call;
 * - prefetch in use, handlers in flight, application states, broker state, generation,
 *   event loop: read at scrape time; reconnects, faults, load failures, quarantines, loop
 *   blocks: counted when they happen (rare);
 * - process CPU, memory, event-loop delay, GC: prom-client's default metrics.
 *
 * Counters survive a re-exec: each generation hands its totals to the next in POSTAGED_STATE
 * (metrics-carry.ts), and a scrape adds them to the live values (prom-client's
 * `AggregatorRegistry.aggregate`, made to sum a cluster's workers). Why carried rather than
 * left to reset: a re-exec is routine here (every plugin change, every `restart`), and
 * Prometheus sees a reset only as a drop between two scrapes: what was counted between the
 * last scrape and the re-exec is lost, and a young generation that has already counted past
 * the old value hides the reset altogether (a `postaged_generation` gauge does not tell
 * `rate()` anything). The process itself never restarts (same PID), so its counters need not
 * either. Counters that are cumulative already (`postaged_restarts_total`,
 * `process_cpu_seconds_total`, which the kernel keeps across exec) are not carried.
 */
import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Connection, GenericApplication, MessageOutcome, ProcessorStats, RpcCallEvent } from 'postage';
import { DurationHistogram, type HistogramSeries } from './duration-histogram.js';
import type { AppStatus } from './host.js';
import { fromCarried, toCarried, type CarriedMetric, type MetricJson } from './metrics-carry.js';
import type { RestartState } from './restart-state.js';

/** Where the daemon-wide figures come from. */
export interface MetricsSources {
  connection: Connection;
  state: RestartState;
  version: string;
  /** Every application as `status` shows it (states of plugins that do not run included). */
  applications(): readonly AppStatus[];
  /** Largest event-loop delay of the last minute, in ms (the watchdog's). */
  maxLoopLagMs(): number;
  /** What the previous generation counted (from POSTAGED_STATE). */
  carried?: readonly CarriedMetric[];
}

type Totals = Omit<ProcessorStats, 'invalid' | 'refused'> & { invalid: Record<string, number>; refused: Record<string, number>; reopens: number };

const COUNTS = ['received', 'handled', 'failed', 'rejected', 'deadLettered', 'unhandled', 'retried', 'timedOut', 'duplicates'] as const;
type Count = (typeof COUNTS)[number];

/** Metric name of each processor counter. */
const COUNT_METRICS: Record<Count, { name: string; help: string }> = {
  received: { name: 'postaged_messages_received_total', help: 'Messages delivered to the application (every one, valid or not).' },
  handled: { name: 'postaged_messages_handled_total', help: 'Messages whose handlers all ran without error (an RPC: answered with its value).' },
  failed: { name: 'postaged_messages_failed_total', help: 'Messages whose handler threw (retried or dead-lettered); RPCs answered with the exception.' },
  rejected: { name: 'postaged_messages_rejected_total', help: 'Messages a filter or handler rejected with RejectMessage (dead-lettered).' },
  deadLettered: { name: 'postaged_messages_dead_lettered_total', help: 'Messages published to the dead-letter exchange (failed after every try, rejected, invalid, timed out).' },
  unhandled: { name: 'postaged_messages_unhandled_total', help: 'Messages no handler was registered for (acked; an RPC is answered with an error).' },
  retried: { name: 'postaged_messages_retried_total', help: 'Copies of failing messages sent back to their queue for another try.' },
  timedOut: { name: 'postaged_messages_timed_out_total', help: 'Handlers that outlived handlerTimeout.' },
  duplicates: { name: 'postaged_messages_duplicates_total', help: 'RPC requests answered again from memory (re-sent by their caller).' },
};

/** Handler durations: from 0.5 ms (an echo) to 60 s (past it, handlerTimeout is the better alarm). */
const HANDLER_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** RPC latency: a local round trip is ~1 ms; the default timeout is 30 s per try, 5 tries. */
const RPC_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 150];

/** Outcomes of a message whose handlers ran: the ones the duration histogram records. */
const TIMED: ReadonlySet<MessageOutcome> = new Set(['handled', 'failed', 'rejected', 'timeout']);

function zero(): Totals {
  return { received: 0, handled: 0, failed: 0, rejected: 0, deadLettered: 0, unhandled: 0, retried: 0, timedOut: 0, duplicates: 0, invalid: {}, refused: {}, reopens: 0 };
}

function addInto(into: Totals, stats: ProcessorStats, reopens: number): void {
  for (const k of COUNTS) into[k] += stats[k];
  for (const [reason, n] of Object.entries(stats.invalid)) into.invalid[reason] = (into.invalid[reason] ?? 0) + (n ?? 0);
  for (const [reason, n] of Object.entries(stats.refused)) into.refused[reason] = (into.refused[reason] ?? 0) + (n ?? 0);
  into.reopens += reopens;
}

/** The daemon's metrics registry and what feeds it. */
export class DaemonMetrics {
  readonly registry = new Registry();
  /** Names of the metrics carried across a re-exec. */
  readonly #carriedNames = new Set<string>();
  readonly #carried: MetricJson[];
  /** Applications running now. */
  readonly #live = new Set<GenericApplication>();
  /** What stopped applications of this generation counted, by name (a plugin reloaded live starts a new processor). */
  readonly #retired = new Map<string, Totals>();
  readonly #handlerDuration: DurationHistogram<'app' | 'category' | 'outcome'>;
  readonly #rpcDuration: Histogram<'app' | 'command' | 'outcome'>;
  readonly #loadFailures: Counter<'app'>;
  readonly #quarantines: Counter<'app'>;
  readonly #faults: Counter<'app' | 'kind'>;
  readonly #loopBlocks: Counter<'app'>;
  readonly #onRpc = (event: RpcCallEvent): void => {
    this.#rpcDuration.labels(event.caller ?? '', event.command, event.outcome).observe(event.durationMs / 1000);
  };

  constructor(private readonly sources: MetricsSources) {
    const registers = [this.registry];
    // prom-client's metric objects carry their name, though its types do not say so.
    const carried = <T extends object>(metric: T): T => {
      this.#carriedNames.add((metric as unknown as { name: string }).name);
      return metric;
    };
    this.#carried = fromCarried(sources.carried ?? []);
    collectDefaultMetrics({ register: this.registry });

    const totals = (): Map<string, Totals> => this.#totals();
    for (const key of COUNTS) {
      const { name, help } = COUNT_METRICS[key];
      carried(
        new Counter({
          name,
          help,
          labelNames: ['app'],
          registers,
          collect(this: Counter<'app'>) {
            this.reset();
            for (const [app, t] of totals()) this.inc({ app }, t[key]);
          },
        }),
      );
    }
    carried(
      new Counter({
        name: 'postaged_messages_invalid_total',
        help: 'Messages refused before any handler, by reason (decode, too-large, too-deep, malformed, redelivered); dead-lettered.',
        labelNames: ['app', 'reason'],
        registers,
        collect(this: Counter<'app' | 'reason'>) {
          this.reset();
          for (const [app, t] of totals()) for (const [reason, n] of Object.entries(t.invalid)) this.inc({ app, reason }, n);
        },
      }),
    );
    carried(
      new Counter({
        name: 'postaged_messages_refused_total',
        help: 'Messages refused by the security options, by reason (unsigned, bad-signature, stale, replayed, reply-target).',
        labelNames: ['app', 'reason'],
        registers,
        collect(this: Counter<'app' | 'reason'>) {
          this.reset();
          for (const [app, t] of totals()) for (const [reason, n] of Object.entries(t.refused)) this.inc({ app, reason }, n);
        },
      }),
    );
    carried(
      new Counter({
        name: 'postaged_channel_reopens_total',
        help: "Times an application's channel was lost and opened again (connection loss, channel error, deleted queue).",
        labelNames: ['app'],
        registers,
        collect(this: Counter<'app'>) {
          this.reset();
          for (const [app, t] of totals()) this.inc({ app }, t.reopens);
        },
      }),
    );
    // The one metric observed per message: its own cheap histogram (duration-histogram.ts).
    this.#handlerDuration = carried(
      new DurationHistogram({
        name: 'postaged_handler_duration_seconds',
        help: 'Time the handlers of one message ran, by category (message, rpc) and outcome (handled, failed, rejected, timeout).',
        labelNames: ['app', 'category', 'outcome'],
        buckets: HANDLER_BUCKETS,
        registers,
      }),
    );
    this.#rpcDuration = carried(
      new Histogram({
        name: 'postaged_rpc_client_duration_seconds',
        help: "RPC calls made by the applications' producers, from the call to its result (every try), by the calling application (empty outside a handler), command and outcome (ok, error, exception, timeout, closed); _count counts the calls.",
        labelNames: ['app', 'command', 'outcome'],
        buckets: RPC_BUCKETS,
        registers,
      }),
    );
    this.#loadFailures = carried(new Counter({ name: 'postaged_plugin_load_failures_total', help: 'Plugins that could not be loaded or started (import, export, constructor, create(), duplicate name).', labelNames: ['app'], registers }));
    this.#quarantines = carried(new Counter({ name: 'postaged_plugin_quarantines_total', help: 'Plugins put in quarantine for crashing the daemon too often.', labelNames: ['app'], registers }));
    this.#faults = carried(
      new Counter({ name: 'postaged_faults_total', help: 'Faults of plugin code that reached the process, by plugin (empty: no plugin) and kind (uncaught exception, unhandled rejection, process.exit()).', labelNames: ['app', 'kind'], registers }),
    );
    this.#loopBlocks = carried(new Counter({ name: 'postaged_event_loop_blocks_total', help: 'Event-loop blocks longer than watchdog.loopLagWarn, by the application whose handler held the loop (empty: unknown).', labelNames: ['app'], registers }));
    const { connection, state } = sources;
    carried(
      new Counter({
        name: 'postaged_broker_reconnects_total',
        help: 'Broker connections made again after a loss.',
        registers,
        collect(this: Counter) {
          this.reset();
          this.inc(Math.max(0, connection.generation - 1));
        },
      }),
    );
    new Counter({
      name: 'postaged_restarts_total',
      help: 'In-place restarts (re-execs) of this process so far.',
      registers,
      collect(this: Counter) {
        this.reset();
        this.inc(state.restarts);
      },
    });
    new Gauge({
      name: 'postaged_generation',
      help: 'Generation of the daemon in this process: 1, then +1 at each in-place restart.',
      registers,
      collect(this: Gauge) {
        this.set(state.generation);
      },
    });
    new Gauge({ name: 'postaged_start_time_seconds', help: 'When the first generation of this process started (Unix time).', registers }).set(Date.parse(state.startedAt) / 1000);
    new Gauge({ name: 'postaged_generation_start_time_seconds', help: 'When the current generation started (Unix time).', registers }).set(state.generationStartedAt / 1000);
    new Gauge({ name: 'postaged_info', help: 'The daemon: its version (value 1).', labelNames: ['version'], registers }).set({ version: sources.version }, 1);
    new Gauge({
      name: 'postaged_broker_connected',
      help: '1 while the broker connection is up, else 0.',
      registers,
      collect(this: Gauge) {
        this.set(connection.state === 'connected' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'postaged_broker_blocked',
      help: '1 while the broker blocks publishing (memory or disk alarm), else 0.',
      registers,
      collect(this: Gauge) {
        this.set(connection.blocked ? 1 : 0);
      },
    });
    new Gauge({
      name: 'postaged_event_loop_max_lag_seconds',
      help: "Largest delay of the event loop over the last minute (the watchdog's).",
      registers,
      collect(this: Gauge) {
        this.set(sources.maxLoopLagMs() / 1000);
      },
    });
    const live = this.#live;
    new Gauge({
      name: 'postaged_prefetch_in_use',
      help: "Deliveries not yet acknowledged on the application's channel (each consumed queue may hold up to postaged_prefetch_limit).",
      labelNames: ['app'],
      registers,
      collect(this: Gauge<'app'>) {
        this.reset();
        for (const app of live) this.set({ app: app.name }, app.consumer.unacked);
      },
    });
    new Gauge({
      name: 'postaged_prefetch_limit',
      help: 'Prefetch of each consumer of the application.',
      labelNames: ['app'],
      registers,
      collect(this: Gauge<'app'>) {
        this.reset();
        for (const app of live) this.set({ app: app.name }, app.consumer.prefetch);
      },
    });
    new Gauge({
      name: 'postaged_handlers_in_flight',
      help: 'Messages whose handlers are running now.',
      labelNames: ['app'],
      registers,
      collect(this: Gauge<'app'>) {
        this.reset();
        for (const app of live) this.set({ app: app.name }, app.inFlightCount);
      },
    });
    new Gauge({
      name: 'postaged_application_state',
      help: 'State of each application (value 1 on its current state): starting, running, recovering, stopping, stopped, failed, quarantined.',
      labelNames: ['app', 'state'],
      registers,
      collect(this: Gauge<'app' | 'state'>) {
        this.reset();
        for (const a of sources.applications()) this.set({ app: a.name, state: a.state }, 1);
      },
    });
    connection.on('rpc', this.#onRpc);
  }

  /** Per application name: what its live instances and the stopped ones of this generation counted. */
  #totals(): Map<string, Totals> {
    const out = new Map<string, Totals>();
    for (const [name, t] of this.#retired) out.set(name, { ...t, invalid: { ...t.invalid }, refused: { ...t.refused } });
    for (const app of this.#live) {
      let t = out.get(app.name);
      if (!t) out.set(app.name, (t = zero()));
      addInto(t, app.stats, app.consumer.reopens);
    }
    return out;
  }

  /** Starts counting an application (before it consumes, so that no message is missed). */
  track(app: GenericApplication): void {
    this.#live.add(app);
    // One series per (category, outcome), made on first use: a message then costs one map
    // lookup and one observation.
    const rpc = new Map<MessageOutcome, HistogramSeries>();
    const message = new Map<MessageOutcome, HistogramSeries>();
    const observe = (outcome: MessageOutcome, durationMs: number, category: string): void => {
      if (!TIMED.has(outcome)) return;
      const isRpc = category === 'rpc';
      const series = isRpc ? rpc : message;
      let s = series.get(outcome);
      if (!s) series.set(outcome, (s = this.#handlerDuration.series({ app: app.name, category: isRpc ? 'rpc' : 'message', outcome })));
      s.observe(durationMs / 1000);
    };
    app.events.on('settled', observe);
    app.events.once('stopped', () => {
      app.events.off('settled', observe);
      if (!this.#live.delete(app)) return;
      const retired = this.#retired.get(app.name) ?? zero();
      addInto(retired, app.stats, app.consumer.reopens);
      this.#retired.set(app.name, retired);
    });
  }

  /** A plugin could not be loaded or started. */
  loadFailed(app: string): void {
    this.#loadFailures.inc({ app });
  }

  /** A plugin was put in quarantine. */
  quarantined(app: string): void {
    this.#quarantines.inc({ app });
  }

  /** A fault of plugin code reached the process. */
  fault(app: string | undefined, kind: string): void {
    this.#faults.inc({ app: app ?? '', kind });
  }

  /** The event loop was blocked past watchdog.loopLagWarn. */
  loopBlocked(app: string | null): void {
    this.#loopBlocks.inc({ app: app ?? '' });
  }

  /** The live values plus what earlier generations counted. */
  async #merged(): Promise<Registry> {
    const live = (await this.registry.getMetricsAsJSON()) as unknown as MetricJson[];
    // Only the carried metrics are summed with their past; the others are taken as they are
    // ('first' of one), whatever aggregator prom-client's defaults declare for a cluster.
    for (const m of live) if (!this.#carriedNames.has(m.name)) m.aggregator = 'first';
    return AggregatorRegistry.aggregate([live, this.#carried]);
  }

  /** The text Prometheus scrapes, and its content type. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    const merged = await this.#merged();
    return { contentType: merged.contentType, body: await merged.metrics() };
  }

  /** What the next generation must start from; `dropped` names what did not fit in the environment. */
  async carry(): Promise<{ carried: CarriedMetric[]; dropped: string[] }> {
    const merged = (await (await this.#merged()).getMetricsAsJSON()) as unknown as MetricJson[];
    return toCarried(merged, this.#carriedNames);
  }

  /** Stops listening to the connection (the registry is left to the garbage collector). */
  close(): void {
    this.sources.connection.off('rpc', this.#onRpc);
  }
}
