/**
 * The fault suite's harness (test/faults, one test per scenario of the fault catalogue):
 *
 * - every test message is a `probe` command with a unique id and a sequence number in its
 *   parameters; it also gets a unique AMQP message_id from the producer;
 * - the sender publishes through the library's producer: a confirm channel, every message
 *   `mandatory`. "Sent" means confirmed and routed; a message the broker returned
 *   (unroutable) or refused (an error) is counted apart, never as sent;
 * - the probe plugin (test/fixtures/plugins/probe.mjs) logs `probed` with the id of every
 *   message it handled: the daemon's log is the record, since it outlives re-execs;
 * - the dead-letter queue of the probe is read at the end;
 * - a tally says sent, handled, duplicated, dead-lettered, lost and unexpected, and is logged
 *   as one line per test (and appended to $POSTAGE_FAULT_FIGURES when set, for the docs).
 *
 * lost: sent, but neither handled nor dead-lettered. unexpected: handled (or dead-lettered)
 * although never published, or published and returned as unroutable. A publish refused with
 * an error ("may or may not have been delivered") that was handled anyway is neither: it is
 * counted as `refusedButHandled`.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import type { ExecutionContext } from 'ava';
import { GenericApplicationExchange, deadLetterQueue, type Connection, type MessageResult } from 'postage';
import { normalizeQueue, queueFlags } from 'postage/internal';
import { brokerEval, erlBinary, listQueues } from './broker.js';
import { controlProducer, type DaemonProcess, type LogLine } from './spawn.js';
import { sleep, waitFor } from './wait-for.js';

/**
 * The catalogue's test settings, as the daemon's environment: heartbeat 5 s, reconnect
 * backoff from 100 ms capped at 2 s, handler timeout 2 s, 5 tries. The body limit (1 MiB) and
 * the depth limit (128) are the library's defaults (DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH).
 */
export const FAULT_SETTINGS: Readonly<Record<string, string>> = Object.freeze({
  POSTAGED_HEARTBEAT: '5',
  POSTAGED_RECONNECT_DELAY: '100',
  POSTAGED_RECONNECT_MAX_DELAY: '2000',
  POSTAGED_HANDLER_TIMEOUT: '2000',
  POSTAGED_MAX_ATTEMPTS: '5',
});

/** Parameters of a probe message (see the probe plugin). */
export interface ProbeParams {
  act?: 'sleep' | 'block' | 'throw' | 'hang' | 'leak' | 'forward';
  ms?: number;
  mb?: number;
  to?: string;
  [key: string]: unknown;
}

/** What became of each publish, by message id. */
export class Ledger {
  /** Confirmed and routed, with the key and when it was published (ms, test clock). */
  readonly sent = new Map<string, { seq: number; key: string; at: number; confirmedAt: number }>();
  /** Confirmed but unroutable (returned by the broker). */
  readonly returned = new Set<string>();
  /** Refused with an error. */
  readonly refused = new Map<string, string>();
  /** Published, no answer yet. */
  readonly pending = new Set<string>();
  #seq = 0;

  nextSeq(): number {
    return ++this.#seq;
  }
}

/** Publishes probe messages through the library's producer and keeps the ledger. */
export class Sender {
  readonly ledger = new Ledger();
  readonly producer;

  constructor(readonly connection: Connection) {
    this.producer = controlProducer(connection);
  }

  /** Publishes one message; resolves when the broker has answered (never rejects). */
  async one(key: string, params: ProbeParams = {}, command = 'probe'): Promise<string> {
    const id = randomUUID();
    const seq = this.ledger.nextSeq();
    const at = Date.now();
    this.ledger.pending.add(id);
    try {
      const { routed } = await this.producer.sendCommand(command, { id, seq, sentAt: at, ...params }, { _key: key });
      if (routed) this.ledger.sent.set(id, { seq, key, at, confirmedAt: Date.now() });
      else this.ledger.returned.add(id);
    } catch (err) {
      this.ledger.refused.set(id, (err as Error).message);
    } finally {
      this.ledger.pending.delete(id);
    }
    return id;
  }

  /**
   * Publishes `count` messages, keys taken in turn from `keys`; at most `window` unconfirmed
   * at once; at `rate` messages per second when given (else as fast as confirms come).
   * `onEach(i)` runs before message i is sent (e.g. to inject a fault at message i).
   */
  async many(count: number, keys: string | readonly string[], options: { rate?: number; window?: number; params?: ProbeParams; onEach?: (i: number) => void | Promise<void> } = {}): Promise<void> {
    const list = typeof keys === 'string' ? [keys] : keys;
    const window = options.window ?? 200;
    const inFlight = new Set<Promise<unknown>>();
    const t0 = performance.now();
    for (let i = 0; i < count; i++) {
      await options.onEach?.(i);
      if (options.rate) {
        const due = t0 + (i * 1000) / options.rate;
        const wait = due - performance.now();
        if (wait > 1) await sleep(wait);
      }
      while (inFlight.size >= window) await Promise.race(inFlight);
      const p = this.one(list[i % list.length]!, options.params).finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    await Promise.all(inFlight);
  }
}

/**
 * Declares application `app`'s shared queue and its `app/rr` binding exactly as the
 * application does (durable topology), so that a backlog can be published before any daemon runs.
 */
export async function predeclare(connection: Connection, app = 'probe'): Promise<void> {
  const { options } = normalizeQueue({ name: app, flags: queueFlags('shared', app)! });
  await connection.withChannel(async (ch) => {
    await GenericApplicationExchange.declare(ch);
    await ch.assertQueue(app, options);
    await ch.bindQueue(app, GenericApplicationExchange.name, `${app}/rr`);
  });
}

/** Ids the probe (application `app`) logged as handled, with how many times each. */
export function handled(daemons: readonly DaemonProcess[], app = 'probe', message = 'probed'): Map<string, number> {
  const counts = new Map<string, number>();
  for (const d of daemons) {
    for (const l of d.lines) {
      if (l.message !== message || l.app !== app) continue;
      const id = String(l['id']);
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
  }
  return counts;
}

/** Lines of the probe `app` with `message`, over several daemon processes. */
export function probeLines(daemons: readonly DaemonProcess[], message = 'probed', app = 'probe'): LogLine[] {
  return daemons.flatMap((d) => d.lines.filter((l) => l.message === message && l.app === app));
}

/** A dead-lettered message, as read back from the dead-letter queue. */
export interface DeadLetter {
  id: string | undefined;
  body: Buffer;
  headers: Record<string, unknown>;
  contentType: string | undefined;
}

/** Reads (and removes) every message of `app`'s dead-letter queue. */
export async function drainDeadLetters(connection: Connection, app = 'probe'): Promise<DeadLetter[]> {
  return connection.withChannel(async (ch) => {
    const out: DeadLetter[] = [];
    const queue = deadLetterQueue(app);
    try {
      await ch.checkQueue(queue);
    } catch {
      return out;
    }
    for (;;) {
      const msg = await ch.get(queue, { noAck: true });
      if (!msg) return out;
      let id: string | undefined;
      try {
        const body = JSON.parse(msg.content.toString('utf8')) as { content?: { parameters?: { id?: unknown } } };
        const raw = body?.content?.parameters?.id;
        if (typeof raw === 'string') id = raw;
      } catch {
        // not JSON: a malformed body, identified by its message_id below
      }
      id ??= typeof msg.properties.messageId === 'string' ? msg.properties.messageId : undefined;
      out.push({ id, body: msg.content, headers: (msg.properties.headers ?? {}) as Record<string, unknown>, contentType: msg.properties.contentType as string | undefined });
    }
  });
}

/** The figures every fault test reports. */
export interface Figures {
  sent: number;
  handled: number;
  duplicated: number;
  deadLettered: number;
  lost: number;
  unexpected: number;
  returned: number;
  refused: number;
  refusedButHandled: number;
}

/** Counts what the ledger sent against what was handled and dead-lettered. */
export function tally(ledger: Ledger, counts: ReadonlyMap<string, number>, deadLetters: readonly DeadLetter[] = []): Figures & { lostIds: string[]; unexpectedIds: string[]; duplicateIds: string[] } {
  const dead = new Set(deadLetters.map((d) => d.id).filter((id): id is string => id !== undefined));
  const lostIds = [...ledger.sent.keys()].filter((id) => !counts.has(id) && !dead.has(id));
  const known = (id: string): boolean => ledger.sent.has(id) || ledger.refused.has(id);
  const unexpectedIds = [...new Set([...counts.keys(), ...dead])].filter((id) => !known(id) || ledger.returned.has(id));
  const duplicateIds = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
  return {
    sent: ledger.sent.size,
    handled: [...counts.keys()].filter((id) => ledger.sent.has(id)).length,
    duplicated: duplicateIds.reduce((n, id) => n + (counts.get(id)! - 1), 0),
    deadLettered: deadLetters.length,
    lost: lostIds.length,
    unexpected: unexpectedIds.length,
    returned: ledger.returned.size,
    refused: ledger.refused.size,
    refusedButHandled: [...ledger.refused.keys()].filter((id) => counts.has(id) || dead.has(id)).length,
    lostIds,
    unexpectedIds,
    duplicateIds,
  };
}

/**
 * Logs the figures as one line, appends them (with the scenario's own measurements) to
 * $POSTAGE_FAULT_FIGURES when set, and asserts the default: lost = 0, unexpected = 0.
 */
export function report(t: ExecutionContext, scenario: number, figures: ReturnType<typeof tally>, measured: Record<string, unknown> = {}): void {
  const { lostIds, unexpectedIds, duplicateIds, ...f } = figures;
  const extra = Object.entries(measured)
    .map(([k, v]) => `${k}=${typeof v === 'number' ? Math.round(v * 10) / 10 : JSON.stringify(v)}`)
    .join(' ');
  t.log(
    `#${scenario}: sent ${f.sent}, handled ${f.handled}, duplicated ${f.duplicated}, dead-lettered ${f.deadLettered}, lost ${f.lost}, unexpected ${f.unexpected}` +
      ` (returned ${f.returned}, refused ${f.refused}, refused but handled ${f.refusedButHandled})${extra ? `; ${extra}` : ''}`,
  );
  const file = process.env['POSTAGE_FAULT_FIGURES'];
  if (file) fs.appendFileSync(file, `${JSON.stringify({ scenario, title: t.title, ...f, ...measured })}\n`);
  t.is(f.lost, 0, `lost: ${lostIds.slice(0, 5).join(', ')}`);
  t.is(f.unexpected, 0, `unexpected: ${unexpectedIds.slice(0, 5).join(', ')}`);
}

/** Waits until every id the ledger sent was handled or dead-lettered by `app` (the log is read as it grows). */
export async function waitHandled(daemons: () => readonly DaemonProcess[], ledger: Ledger, options: { app?: string; timeout?: number; deadLettered?: () => ReadonlySet<string> } = {}): Promise<void> {
  let missing = 0;
  try {
    await waitFor(
      'every sent message handled',
      () => {
        const counts = handled(daemons(), options.app ?? 'probe');
        const dead = options.deadLettered?.() ?? new Set<string>();
        missing = 0;
        for (const id of ledger.sent.keys()) if (!counts.has(id) && !dead.has(id)) missing++;
        return missing === 0;
      },
      options.timeout ?? 60_000,
      50,
    );
  } catch (err) {
    const last = daemons().at(-1);
    throw new Error(`${(err as Error).message}: ${missing} of ${ledger.sent.size} not handled\nlast lines: ${last?.tail(20)}\nstderr: ${last?.stderr.slice(-2000)}`);
  }
}

/** RPC `ping` to `key`; true when answered within `timeout` seconds. */
export async function pings(connection: Connection, key: string, timeout = 5): Promise<boolean> {
  const reply: MessageResult = await controlProducer(connection).rpcCommand('ping', {}, { _key: key, _timeout: timeout, _max_retry: 1 });
  return reply.ok;
}

/** RPC `status` of the daemon's own application. */
export async function daemonStatus<T = Record<string, any>>(connection: Connection, key = 'postaged', timeout = 10): Promise<T> {
  const reply = await controlProducer(connection).rpcCommand('status', {}, { _key: key, _timeout: timeout, _max_retry: 0 });
  if (!reply.ok) throw new Error(`status: ${reply.message}`);
  return reply.value as T;
}

/** Waits until every application queue of the vhost (dead-letter queues aside) is empty and returns them. */
export async function queuesDrained(vhost: string, timeout = 30_000): Promise<Awaited<ReturnType<typeof listQueues>>> {
  return waitFor(
    'every application queue empty',
    async () => {
      const queues = await listQueues(vhost);
      return queues.filter((q) => !q.name.startsWith('postage.dead-letter.')).every((q) => q.messages === 0) ? queues : undefined;
    },
    timeout,
    200,
  );
}

/**
 * Closes every connection of `vhost` once its queue `queue` holds at most `threshold`
 * messages: one evaluation on the broker's node (`brokerEval`) that waits there, so that the fault lands at
 * the message asked for (a rabbitmqctl started at that moment takes a second or more to boot
 * an Erlang VM, by which time the stream may be over). Resolves with the queue's length when
 * it closed them and how many connections it closed.
 */
export async function closeConnectionsWhen(vhost: string, queue: string, threshold: number, explanation: string): Promise<{ messages: number; closed: number }> {
  const erlang = `V = ${erlBinary(vhost)}, Q = rabbit_misc:r(V, queue, ${erlBinary(queue)}),
    Wait = fun W(N) ->
      Len = case rabbit_amqqueue:lookup(Q) of {ok, Qu} -> [{messages, M}] = rabbit_amqqueue:info(Qu, [messages]), M; _ -> undefined end,
      if is_integer(Len) andalso Len =< ${threshold} -> Len; N > 24000 -> timeout; true -> timer:sleep(5), W(N + 1) end
    end,
    Len = Wait(0),
    Conns = rabbit_connection_tracking:list_on_node(node(), V),
    [rabbit_networking:close_connection(element(6, C), ${JSON.stringify(explanation)}) || C <- Conns],
    {Len, length(Conns)}.`;
  const out = await brokerEval(erlang);
  const m = /^\{(\d+),(\d+)\}$/.exec(out);
  if (!m) throw new Error(`closeConnectionsWhen: ${out}`);
  return { messages: Number(m[1]), closed: Number(m[2]) };
}

/**
 * Closes the connections of `vhost` `times` times, each one as soon as the broker tracks it
 * (0 ms delay), in one evaluation on the broker's node. Before each close it reads the consumer count of
 * each queue in `queues`. Resolves with, for each close, how many connections it closed and
 * those counts (-1: queue missing).
 */
export async function closeConnectionsRepeatedly(vhost: string, times: number, queues: readonly string[], explanation: string): Promise<Array<{ closed: number; consumers: number[] }>> {
  const erlang = `V = ${erlBinary(vhost)},
    Qs = [rabbit_misc:r(V, queue, N) || N <- [${queues.map(erlBinary).join(',')}]],
    Consumers = fun() -> [case rabbit_amqqueue:lookup(Q) of {ok, Qu} -> [{consumers, C}] = rabbit_amqqueue:info(Qu, [consumers]), C; _ -> -1 end || Q <- Qs] end,
    Loop = fun L(0, _Closed, Acc) -> lists:reverse(Acc);
               L(N, Closed, Acc) ->
                 Wait = fun W(K) ->
                   Live = [element(6, C) || C <- rabbit_connection_tracking:list_on_node(node(), V), not lists:member(element(6, C), Closed)],
                   if Live =:= [] andalso K < 3000 -> timer:sleep(1), W(K + 1); true -> Live end
                 end,
                 Live = Wait(0),
                 Counts = Consumers(),
                 [rabbit_networking:close_connection(P, ${JSON.stringify(explanation)}) || P <- Live],
                 L(N - 1, Live ++ Closed, [{length(Live), Counts} | Acc])
           end,
    Loop(${times}, [], []).`;
  const out = await brokerEval(erlang);
  const rows = [...out.matchAll(/\{(\d+),\[([-\d,]*)\]\}/g)].map((m) => ({ closed: Number(m[1]), consumers: m[2] ? m[2].split(',').map(Number) : [] }));
  if (rows.length !== times) throw new Error(`closeConnectionsRepeatedly: ${out.slice(0, 500)}`);
  return rows;
}

/**
 * Deletes queue `queue` of `vhost` (as `rabbitmqctl delete_queue` does), in one eval that
 * also says when it started and ended (ms since the epoch, the broker's clock: this
 * machine's), how many ready messages went with it (`messages`), and how many it held,
 * delivered but unacknowledged ones included, just before (`inQueue`).
 */
export async function deleteQueue(vhost: string, queue: string): Promise<{ at: number; done: number; messages: number; inQueue: number }> {
  const erlang = `{ok, Q} = rabbit_amqqueue:lookup(rabbit_misc:r(${erlBinary(vhost)}, queue, ${erlBinary(queue)})),
    [{messages, M}] = rabbit_amqqueue:info(Q, [messages]),
    T = erlang:system_time(millisecond),
    {ok, N} = rabbit_amqqueue:delete(Q, false, false, <<"fault-test">>),
    {T, erlang:system_time(millisecond), N, M}.`;
  const out = await brokerEval(erlang);
  const m = /^\{(\d+),(\d+),(\d+),(\d+)\}$/.exec(out);
  if (!m) throw new Error(`deleteQueue: ${out}`);
  return { at: Number(m[1]), done: Number(m[2]), messages: Number(m[3]), inQueue: Number(m[4]) };
}

/** Percentile (0–100) of a list of numbers. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Milliseconds since the epoch of a log line (winston's ISO timestamp). */
export function at(line: LogLine | undefined): number {
  return line ? Date.parse(String(line['timestamp'])) : NaN;
}

/** Resident memory of a process in MiB (/proc). */
export function rssMiB(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}
