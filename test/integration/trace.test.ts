/**
 * W3C trace context across applications: a producer's trace reaches the handler, goes on
 * through an RPC the handler makes to another application, and comes back in each reply; the
 * handlers' log lines carry the trace id; the processor and connection events metrics use.
 */
import {
  childSpan,
  currentTrace,
  GenericApplication,
  GenericApplicationExchange,
  GenericProducer,
  MessageHandler,
  newTrace,
  RpcHandler,
  runWithTrace,
  type ApplicationOptions,
  type Logger,
  type MessageOutcome,
  type RpcCallEvent,
  type TraceContext,
} from 'postage';
import { brokerTest as test, freshVhost } from '../helpers/broker.js';
import { appProducer, startProcessor } from '../helpers/apps.js';
import { waitFor } from '../helpers/wait-for.js';

interface Line {
  level: string;
  message: string;
  meta: Record<string, unknown>;
}

/** A logger that keeps every line (its children share the list and add their fields). */
function memoryLogger(lines: Line[], fields: Record<string, unknown> = {}): Logger {
  const at = (level: string) => (message: string, meta?: Record<string, unknown>) => lines.push({ level, message, meta: { ...fields, ...meta } });
  return { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug'), isDebugEnabled: () => false, child: (meta) => memoryLogger(lines, { ...fields, ...meta }) };
}

interface Seen {
  trace: TraceContext | undefined;
}

/** Answers `echo` with the span its handler ran in. */
class Back extends GenericApplication {
  static override appName = 'back';
  readonly seen: Seen[] = [];

  @RpcHandler('command', 'echo')
  echo(content: { parameters: unknown }): unknown {
    this.seen.push({ trace: currentTrace() });
    this.logger.info('back echo', { text: content.parameters });
    return { trace: currentTrace() };
  }
}

/** Answers `ask` by asking `back` (an RPC inside a handler), and handles a plain `note`. */
class Front extends GenericApplication {
  static override appName = 'front';
  readonly seen: Seen[] = [];
  backTrace: TraceContext | undefined;

  @RpcHandler('command', 'ask')
  async ask(content: { parameters: unknown }): Promise<unknown> {
    this.seen.push({ trace: currentTrace() });
    this.logger.info('front asks back', { text: content.parameters });
    const reply = await appProducer(this.connection, 'front').rpcCommand('echo', content.parameters, { _key: 'back/rr', _timeout: 10, _max_retry: 0 });
    this.backTrace = reply.trace;
    this.logger.info('front got the answer');
    return { trace: currentTrace() };
  }

  @MessageHandler('command', 'note')
  note(_content: unknown): void {
    this.seen.push({ trace: currentTrace() });
    this.logger.info('front note');
  }
}

test('a trace crosses producer → handler → RPC inside it → replies, and every handler log line carries it', async (t) => {
  const { connection } = await freshVhost(t);
  const lines: Line[] = [];
  const options: ApplicationOptions = { connection, logger: memoryLogger(lines) };
  const back = await startProcessor(t, new Back(options));
  const front = await startProcessor(t, new Front(options));
  const rpcEvents: RpcCallEvent[] = [];
  connection.on('rpc', (e) => rpcEvents.push(e));

  const origin = newTrace();
  const reply = await runWithTrace(origin, () => appProducer(connection).rpcCommand('ask', 'hello', { _key: 'front/rr', _timeout: 10, _max_retry: 0 }));
  t.true(reply.ok, reply.message);

  // The handler of `ask` ran in a child span of the caller's context.
  const frontSpan = front.seen[0]?.trace;
  t.is(frontSpan?.traceId, origin.traceId);
  t.is(frontSpan?.parentSpanId, origin.spanId);
  t.not(frontSpan?.spanId, origin.spanId);
  // The RPC it made continued the trace: back's span is the child of front's.
  const backSpan = back.seen[0]?.trace;
  t.is(backSpan?.traceId, origin.traceId);
  t.is(backSpan?.parentSpanId, frontSpan?.spanId);
  // Each reply carries the responder's span back.
  t.deepEqual({ traceId: front.backTrace?.traceId, spanId: front.backTrace?.spanId }, { traceId: origin.traceId, spanId: backSpan?.spanId });
  t.deepEqual({ traceId: reply.trace?.traceId, spanId: reply.trace?.spanId }, { traceId: origin.traceId, spanId: frontSpan?.spanId });
  t.like(reply.value as object, { trace: { traceId: origin.traceId } });

  // Every line the handlers logged carries the trace, with its own span.
  const handlerLines = lines.filter((l) => ['front asks back', 'front got the answer', 'back echo'].includes(l.message));
  t.is(handlerLines.length, 3);
  for (const line of handlerLines) t.is(line.meta['trace_id'], origin.traceId, line.message);
  t.is(handlerLines.find((l) => l.message === 'back echo')?.meta['span_id'], backSpan?.spanId);
  t.is(handlerLines.find((l) => l.message === 'front got the answer')?.meta['span_id'], frontSpan?.spanId);

  // The RPC made inside front's handler is attributed to front; the test's own call to no one.
  await waitFor('two rpc events', () => rpcEvents.length === 2);
  const byCaller = Object.fromEntries(rpcEvents.map((e) => [e.caller ?? '(none)', e]));
  t.like(byCaller['front'], { command: 'echo', outcome: 'ok' });
  t.like(byCaller['(none)'], { command: 'ask', outcome: 'ok' });
  t.true(rpcEvents.every((e) => e.durationMs > 0));
});

test('outside any context a send carries no trace, and its handler runs outside any (no cost); runWithTrace starts one; a Python message has none', async (t) => {
  const { connection } = await freshVhost(t);
  const lines: Line[] = [];
  const front = await startProcessor(t, new Front({ connection, logger: memoryLogger(lines) }));
  const producer = appProducer(connection);
  await producer.sendCommand('note', {}, { _key: 'front/rr' });
  const started = newTrace();
  await runWithTrace(started, () => producer.sendCommand('note', {}, { _key: 'front/rr' }));
  // As Python Postage sends it: no headers at all.
  class Bare extends GenericProducer {
    static override eks = [[GenericApplicationExchange, 'front/rr']] as const;
  }
  const bare = new Bare({ connection });
  const ch = await connection.createChannel();
  t.teardown(() => ch.close().catch(() => undefined));
  ch.publish('generic-application-exchange', 'front/rr', bare.encoder.encode({ type: 'command', name: 'note', category: 'message', version: '2', fingerprint: {}, content: { parameters: {} }, _reserved: {} }), { contentType: 'application/json' });
  await waitFor('three notes', () => front.seen.length === 3);
  t.is(front.seen[0]?.trace, undefined, 'a send outside any trace starts none');
  t.is(front.seen[1]?.trace?.traceId, started.traceId, 'runWithTrace: the handler runs in that trace');
  t.is(front.seen[1]?.trace?.parentSpanId, started.spanId, 'as a child of the span that sent it');
  t.is(front.seen[2]?.trace, undefined, 'the bare (Python) message: no trace');
  const notes = lines.filter((l) => l.message === 'front note');
  t.deepEqual(notes.map((l) => l.meta['trace_id']), [undefined, started.traceId, undefined], 'only the traced handler logs a trace id');
});

test('settled events give each outcome and the handler time; traceContext false runs handlers outside any trace', async (t) => {
  const { connection } = await freshVhost(t);
  const lines: Line[] = [];
  class Plain extends GenericApplication {
    static override appName = 'plain';
    seen: Array<TraceContext | undefined> = [];
    @MessageHandler('command', 'ok')
    ok(_c: unknown): void {
      this.seen.push(currentTrace());
      this.logger.info('plain ok');
    }
    @MessageHandler('command', 'boom')
    boom(_c: unknown): void {
      throw new Error('boom');
    }
  }
  const app = await startProcessor(t, new Plain({ connection, logger: memoryLogger(lines), traceContext: false }));
  const settled: Array<[MessageOutcome, number, string]> = [];
  app.events.on('settled', (outcome, ms, category) => settled.push([outcome, ms, category]));
  const producer = appProducer(connection);
  await runWithTrace(childSpan(undefined), () => producer.sendCommand('ok', {}, { _key: 'plain/rr' }));
  await producer.sendCommand('boom', {}, { _key: 'plain/rr' });
  await producer.sendCommand('nobody', {}, { _key: 'plain/rr' });
  await waitFor('three settled', () => settled.length === 3);
  t.deepEqual(
    settled.map(([o, , c]) => `${c}:${o}`),
    ['message:handled', 'message:failed', 'message:unhandled'],
  );
  t.true(settled.every(([, ms]) => ms >= 0 && ms < 60_000));
  t.deepEqual(app.seen, [undefined], 'no trace context in the handler');
  t.false(lines.some((l) => 'trace_id' in l.meta), 'no trace ids in the log');
});
