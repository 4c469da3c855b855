import test from 'ava';
import { childSpan, currentTrace, formatTraceparent, newTrace, outgoingTraceHeaders, parseTraceparent, runWithTrace } from '../../../lib/wire/trace-context.js';

const ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';

test('traceparent: the W3C example parses and formats back', (t) => {
  const value = `00-${ID}-${SPAN}-01`;
  const trace = parseTraceparent(value, 'congo=t61rcWkgMzE');
  t.deepEqual(trace, { traceId: ID, spanId: SPAN, flags: '01', traceState: 'congo=t61rcWkgMzE' });
  t.is(formatTraceparent(trace!), value);
  t.deepEqual(parseTraceparent(Buffer.from(value)), { traceId: ID, spanId: SPAN, flags: '01' }, 'AMQP may hand headers over as bytes');
});

test('traceparent: invalid values are ignored, a later version is read', (t) => {
  for (const bad of [undefined, 42, '', 'garbage', `00-${'0'.repeat(32)}-${SPAN}-01`, `00-${ID}-${'0'.repeat(16)}-01`, `ff-${ID}-${SPAN}-01`, `00-${ID}-${SPAN}-01-extra`, `00-${ID.slice(1)}-${SPAN}-01`]) {
    t.is(parseTraceparent(bad), undefined, String(bad));
  }
  t.like(parseTraceparent(`01-${ID}-${SPAN}-01-future`), { traceId: ID, spanId: SPAN });
  t.like(parseTraceparent(`00-${ID.toUpperCase()}-${SPAN}-01`), { traceId: ID }, 'read in lower case');
});

test('a child span keeps the trace, flags and state, and names its parent; no parent: a new trace', (t) => {
  const parent = { traceId: ID, spanId: SPAN, flags: '00', traceState: 'a=b' };
  const child = childSpan(parent);
  t.like(child, { traceId: ID, parentSpanId: SPAN, flags: '00', traceState: 'a=b' });
  t.regex(child.spanId, /^[0-9a-f]{16}$/);
  t.not(child.spanId, SPAN);
  const root = childSpan(undefined);
  t.regex(root.traceId, /^[0-9a-f]{32}$/);
  t.is(root.parentSpanId, undefined);
  const ids = new Set(Array.from({ length: 2000 }, () => newTrace().spanId));
  t.is(ids.size, 2000, 'ids from the pool do not repeat');
});

test('runWithTrace makes a context current through awaits and timers; sends outside one carry no trace', async (t) => {
  t.is(currentTrace(), undefined);
  t.is(outgoingTraceHeaders(), undefined);
  const trace = newTrace();
  await runWithTrace(trace, async () => {
    await new Promise((r) => setTimeout(r, 5));
    t.is(currentTrace(), trace);
    t.is(outgoingTraceHeaders()?.['traceparent'], formatTraceparent(trace));
  });
  t.is(currentTrace(), undefined);
  runWithTrace(`00-${ID}-${SPAN}-01`, () => t.is(currentTrace()?.traceId, ID));
  runWithTrace('not a traceparent', () => t.regex(currentTrace()?.traceId ?? '', /^[0-9a-f]{32}$/));
});
