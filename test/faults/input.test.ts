/**
 * Fault catalogue, hostile input: #23 malformed bodies, #25 deep nesting, #26 prototype keys.
 * Real broker, real `postaged` with the probe plugin, the catalogue's test settings
 * (test/helpers/faults.ts). Hostile bodies are published with raw amqplib on a confirm channel
 * of the test's own connection (test/helpers/hostile.ts) to the probe's shared queue, through
 * the binding the application declares (`probe/rr` on the generic application exchange); the
 * good ones go through the library's producer (Sender). Every hostile message is in the ledger
 * too: confirmed and routed, it must be dead-lettered (lost = 0 covers it), never handled.
 * The tests of this file run one after the other: each one loads the machine.
 */
import { randomBytes } from 'node:crypto';
import anyTest, { type TestFn } from 'ava';
import { brokerReachable, freshVhost } from '../helpers/broker.js';
import { FAULT_SETTINGS, Sender, daemonStatus, drainDeadLetters, handled, pings, queuesDrained, report, tally, waitHandled, type DeadLetter } from '../helpers/faults.js';
import { RawPublisher, RawRpc, bodyText, inWindow, probeParams } from '../helpers/hostile.js';
import { controlProducer, pluginFolder, startDaemon, type DaemonProcess, type LogLine } from '../helpers/spawn.js';
import { waitFor } from '../helpers/wait-for.js';

const test: TestFn = brokerReachable || process.env['CI'] === 'true' ? anyTest : (anyTest.skip as unknown as TestFn);

const HOST = 'fault-host';
const REFUSED_LINE = 'refused a message that is not a valid Postage body';

/** Lines that say the daemon crashed, restarted or hit a RangeError. */
function troubles(daemon: DaemonProcess): LogLine[] {
  return daemon.lines.filter((l) => l.message === 're-exec' || /re-exec|RangeError|Maximum call stack|uncaught|unhandled rejection/i.test(`${l.message} ${String(l['error'] ?? '')}`));
}

/** The probe's counts of refused messages, per reason, from the daemon's `status`. */
async function invalidCounts(connection: Parameters<typeof daemonStatus>[0], app = 'probe'): Promise<Record<string, number>> {
  const status = await daemonStatus(connection);
  const entry = (status['applications'] as Array<{ name: string; invalid?: Record<string, number> }>).find((a) => a.name === app);
  return entry?.invalid ?? {};
}

/** Dead letters by id, with their reason header. */
function reasons(deadLetters: readonly DeadLetter[]): Map<string, string> {
  return new Map(deadLetters.map((d) => [d.id ?? '?', String(d.headers['x-postage-reason'])]));
}

/** Waits until every id in `ids` is in `app`'s dead-letter queue (read without removing: counted by the broker). */
async function waitDeadLettered(daemon: DaemonProcess, count: number, connection: Parameters<typeof daemonStatus>[0], timeout = 60_000): Promise<void> {
  await waitFor(
    `${count} dead-lettered`,
    async () => {
      const s = await daemonStatus(connection);
      const probe = (s['applications'] as Array<{ name: string; counts: { deadLettered: number } }>).find((a) => a.name === 'probe');
      return (probe?.counts.deadLettered ?? 0) >= count;
    },
    timeout,
    250,
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}\n${daemon.tail(20)}`);
  });
}

test.serial('#23 malformed bodies: 100 of each kind among 1,000 good; no crash, each dead-lettered with its reason, counted per reason, at most one log line per reason per second', async (t) => {
  t.timeout(180_000);
  const { url, vhost, connection } = await freshVhost(t, 'fault-23');
  const daemon = await startDaemon(t, { url, args: ['--plugins', pluginFolder(t, ['probe.mjs']), '--host', HOST], env: { ...FAULT_SETTINGS } });
  const pid = daemon.pid;
  const sender = new Sender(connection);
  const raw = await RawPublisher.open(connection, sender.ledger);
  t.teardown(() => raw.close());

  // The kinds of bad body, 100 of each, and the reason each one must be refused with.
  const JSON_TYPE = { contentType: 'application/json' };
  const kinds: Record<string, { reason: string; make: (id: string, seq: number) => { content: Buffer; props: Record<string, unknown> } }> = {
    'random bytes': { reason: 'decode', make: () => ({ content: randomBytes(16 + Math.floor(Math.random() * 184)), props: JSON_TYPE }) },
    // A probe body with a string holding bytes that are not UTF-8.
    'bad UTF-8': {
      reason: 'decode',
      make: (id, seq) => {
        const [before, after] = bodyText(probeParams(id, seq, ',"text":"@@"')).split('@@') as [string, string];
        return { content: Buffer.concat([Buffer.from(before), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), Buffer.from(after)]), props: JSON_TYPE };
      },
    },
    empty: { reason: 'decode', make: () => ({ content: Buffer.alloc(0), props: JSON_TYPE }) },
    // A valid probe body, sent as text/plain: refused for its type, not handled.
    'wrong content-type': { reason: 'content-type', make: (id, seq) => ({ content: Buffer.from(bodyText(probeParams(id, seq))), props: { contentType: 'text/plain' } }) },
    'JSON array': { reason: 'malformed', make: (id) => ({ content: Buffer.from(`["${id}",1,2]`), props: JSON_TYPE }) },
    'JSON number': { reason: 'malformed', make: (_id, seq) => ({ content: Buffer.from(String(seq)), props: JSON_TYPE }) },
    'JSON null': { reason: 'malformed', make: () => ({ content: Buffer.from('null'), props: JSON_TYPE }) },
    // No category, no content.
    'missing fields': { reason: 'malformed', make: () => ({ content: Buffer.from('{"type":"command","name":"probe"}'), props: JSON_TYPE }) },
    // A category that is a number, content that is a string.
    'mistyped fields': { reason: 'malformed', make: (id, seq) => ({ content: Buffer.from(`{"type":"command","name":"probe","category":7,"version":"2","fingerprint":{},"content":"${id}:${seq}","_reserved":{}}`), props: JSON_TYPE }) },
  };
  const PER_KIND = 100;
  const GOOD = 1000;
  // Every message in a shuffled order: the bad ones among the good ones.
  const plan: Array<string | null> = [];
  for (const kind of Object.keys(kinds)) for (let i = 0; i < PER_KIND; i++) plan.push(kind);
  for (let i = 0; i < GOOD; i++) plan.push(null);
  for (let i = plan.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [plan[i], plan[j]] = [plan[j]!, plan[i]!];
  }
  const kindOf = new Map<string, string>();
  const startedAt = Date.now();
  await inWindow(plan, 100, async (kind) => {
    if (kind === null) return sender.one('probe/rr');
    const seq = sender.ledger.nextSeq();
    const id = `bad-${seq}`;
    kindOf.set(id, kind);
    const { content, props } = kinds[kind]!.make(id, seq);
    return raw.publish('probe/rr', content, { id, seq, ...props });
  });
  const publishMs = Date.now() - startedAt;
  t.is(sender.ledger.sent.size, plan.length, 'every message confirmed and routed');

  const bad = plan.length - GOOD;
  await waitDeadLettered(daemon, bad, connection);
  await waitHandled(() => [daemon], sender.ledger, { deadLettered: () => new Set(kindOf.keys()) });
  await queuesDrained(vhost);

  // No crash: the same process, first generation, nothing restarted, nothing uncaught.
  t.is(daemon.exit, undefined, 'the daemon is running');
  t.is(daemon.pid, pid);
  const status = await daemonStatus(connection);
  t.is(status['pid'], pid, 'same PID');
  t.is(status['generation'], 1, 'never re-exec\'d');
  t.deepEqual(troubles(daemon), [], 'no crash, restart or RangeError logged');
  t.true(await pings(connection, 'probe'), 'ping answered');

  // Each bad one dead-lettered with the reason of its kind; the good ones handled, none dead-lettered.
  const deadLetters = await drainDeadLetters(connection);
  const reasonOf = reasons(deadLetters);
  const perKind: Record<string, Record<string, number>> = {};
  for (const [id, kind] of kindOf) {
    const reason = reasonOf.get(id) ?? 'missing';
    perKind[kind] ??= {};
    perKind[kind]![reason] = (perKind[kind]![reason] ?? 0) + 1;
  }
  for (const [kind, { reason }] of Object.entries(kinds)) t.deepEqual(perKind[kind], { [reason]: PER_KIND }, `${kind}: every one dead-lettered with reason ${reason}`);
  const perReason: Record<string, number> = {};
  for (const d of deadLetters) {
    const reason = String(d.headers['x-postage-reason']);
    perReason[reason] = (perReason[reason] ?? 0) + 1;
  }
  const expected: Record<string, number> = {};
  for (const { reason } of Object.values(kinds)) expected[reason] = (expected[reason] ?? 0) + PER_KIND;
  t.deepEqual(perReason, expected, 'dead letters per reason');
  t.true(deadLetters.every((d) => typeof d.headers['x-postage-error'] === 'string' && d.headers['x-postage-app'] === 'probe'), 'each dead letter says the error and the application');
  const handledCounts = handled([daemon]);
  t.deepEqual([...kindOf.keys()].filter((id) => handledCounts.has(id)), [], 'no bad message handled');

  // status counts them per reason, as the dead-letter queue does.
  const counted = await invalidCounts(connection);
  t.deepEqual(counted, expected, 'status: invalid per reason');

  // At most one log line per reason per second (the daemon's own timestamps).
  const refusedLines = daemon.find((l) => l.message === REFUSED_LINE && l.app === 'probe');
  const perSecond = new Map<string, number>();
  for (const l of refusedLines) {
    const key = `${String(l['reason'])} ${String(l['timestamp']).slice(0, 19)}`;
    perSecond.set(key, (perSecond.get(key) ?? 0) + 1);
  }
  const maxPerReasonPerSecond = Math.max(0, ...perSecond.values());
  t.true(maxPerReasonPerSecond <= 1, `log lines per reason per second: at most ${maxPerReasonPerSecond}`);
  t.deepEqual([...new Set(refusedLines.map((l) => String(l['reason'])))].sort(), Object.keys(expected).sort(), 'each reason logged');
  t.true(refusedLines.every((l) => l.level === 'warn'), 'logged as warnings');

  const figures = tally(sender.ledger, handledCounts, deadLetters);
  report(t, 23, figures, { bad, good: GOOD, publishMs, deadLetteredPerReason: perReason, statusInvalid: counted, refusedLogLines: refusedLines.length, maxLogLinesPerReasonPerSecond: maxPerReasonPerSecond });
  t.is(figures.handled, GOOD, 'every good one handled');
  t.is(figures.deadLettered, bad, 'every bad one dead-lettered');
  t.is(figures.duplicated, 0);
});

test.serial('#25 deep nesting: 1k to 1M levels of arrays and objects refused by the byte scan before parsing (an RPC answered with an error), 0 RangeErrors, the daemon alive', async (t) => {
  t.timeout(120_000);
  const { url, vhost, connection } = await freshVhost(t, 'fault-25');
  const daemon = await startDaemon(t, { url, args: ['--plugins', pluginFolder(t, ['probe.mjs']), '--host', HOST], env: { ...FAULT_SETTINGS } });
  const pid = daemon.pid;
  const sender = new Sender(connection);
  const raw = await RawPublisher.open(connection, sender.ledger);
  t.teardown(() => raw.close());
  const rpc = await RawRpc.open(connection);
  t.teardown(() => rpc.close());
  const LIMIT = 1024 * 1024; // DEFAULT_MAX_BYTES
  const DEPTH = 128; // DEFAULT_MAX_DEPTH

  // A probe body nests 3 levels (body, content, parameters) around the nested value.
  const nested = (kind: 'array' | 'object', levels: number): string => (kind === 'array' ? `${'['.repeat(levels)}${']'.repeat(levels)}` : `${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`);
  interface Case {
    label: string;
    text: (id: string, seq: number, category: 'message' | 'rpc') => string;
    expect: 'too-deep' | 'too-large' | 'handled';
  }
  const cases: Case[] = [];
  for (const levels of [1_000, 10_000, 100_000, 1_000_000]) {
    for (const kind of ['array', 'object'] as const) {
      const inner = nested(kind, levels);
      const size = bodyText(probeParams('x'.repeat(36), 1, `,"deep":${inner}`)).length;
      // A valid body that deep is larger than the size limit beyond ~170k levels of objects
      // or ~520k of arrays: that one is refused by the size check, earlier still.
      cases.push({ label: `${levels} levels of ${kind}s (${size} bytes)`, text: (id, seq, category) => bodyText(probeParams(id, seq, `,"deep":${inner}`), { category }), expect: size > LIMIT ? 'too-large' : 'too-deep' });
    }
  }
  // A million levels under the size limit: an unterminated body of 1,000,000 '[' (hostile
  // input need not be valid JSON), and 262,000 levels of objects.
  cases.push({ label: '1000000 levels, unterminated', text: () => '['.repeat(1_000_000), expect: 'too-deep' });
  cases.push({ label: '262000 levels of objects, unterminated', text: () => '{"":'.repeat(262_000), expect: 'too-deep' });
  // The boundary: a body nesting exactly the limit is handled; one level more is refused.
  cases.push({ label: `a body of depth ${DEPTH}`, text: (id, seq, category) => bodyText(probeParams(id, seq, `,"deep":${nested('array', DEPTH - 3)}`), { category }), expect: 'handled' });
  cases.push({ label: `a body of depth ${DEPTH + 1}`, text: (id, seq, category) => bodyText(probeParams(id, seq, `,"deep":${nested('array', DEPTH - 2)}`), { category }), expect: 'too-deep' });

  // Each case as a message (dead-lettered) and as an RPC (answered with an error, and dead-lettered).
  const expectOf = new Map<string, Case>();
  for (const c of cases) {
    const seq = sender.ledger.nextSeq();
    const id = `deep-${seq}`;
    expectOf.set(id, c);
    await raw.publish('probe/rr', c.text(id, seq, 'message'), { id, seq, contentType: 'application/json' });
  }
  const replies: Array<{ c: Case; type: string; message: string }> = [];
  for (const c of cases) {
    const seq = sender.ledger.nextSeq();
    const id = `deep-rpc-${seq}`;
    expectOf.set(id, c);
    const at = Date.now();
    const reply = await rpc.call('probe/rr', c.text(id, seq, 'rpc'), { id, timeoutMs: 30_000 });
    // Answered: it was routed and received (the ledger counts it as sent).
    sender.ledger.sent.set(id, { seq, key: 'probe/rr', at, confirmedAt: Date.now() });
    replies.push({ c, type: reply.type, message: reply.message });
  }
  // Good messages after them: the probe goes on.
  await sender.many(100, 'probe/rr');
  await waitHandled(() => [daemon], sender.ledger, { deadLettered: () => new Set([...expectOf].filter(([, c]) => c.expect !== 'handled').map(([id]) => id)) });
  const refusedCount = [...expectOf.values()].filter((c) => c.expect !== 'handled').length;
  await waitDeadLettered(daemon, refusedCount, connection);
  await queuesDrained(vhost);

  for (const r of replies) {
    if (r.c.expect === 'handled') t.is(r.type, 'success', `${r.c.label}: RPC answered`);
    else {
      t.is(r.type, 'error', `${r.c.label}: RPC answered with an error`);
      t.regex(r.message, r.c.expect === 'too-deep' ? /too-deep.*nests deeper than the limit of 128/ : /too-large.*exceeds the limit of 1048576/, r.c.label);
    }
  }
  const deadLetters = await drainDeadLetters(connection);
  const reasonOf = reasons(deadLetters);
  const seen: Record<string, string> = {};
  for (const [id, c] of expectOf) {
    const got = reasonOf.get(id) ?? (handled([daemon]).has(id) ? 'handled' : 'missing');
    seen[`${id.startsWith('deep-rpc') ? 'rpc' : 'message'}: ${c.label}`] = got;
    t.is(got, c.expect, `${c.label} (${id})`);
  }
  // The byte scan's error, not JSON.parse's: refused before parsing.
  const deep = deadLetters.filter((d) => d.headers['x-postage-reason'] === 'too-deep');
  t.true(deep.length > 0 && deep.every((d) => /nests deeper than the limit of 128/.test(String(d.headers['x-postage-error']))), 'refused by the depth scan');

  const rangeErrors = daemon.lines.filter((l) => /RangeError|Maximum call stack/.test(JSON.stringify(l))).length + (daemon.stderr.match(/RangeError|Maximum call stack/g)?.length ?? 0);
  t.is(rangeErrors, 0, 'no RangeError');
  t.is(daemon.exit, undefined, 'the daemon is running');
  const status = await daemonStatus(connection);
  t.is(status['pid'], pid, 'same PID');
  t.is(status['generation'], 1, 'never re-exec\'d');
  t.deepEqual(troubles(daemon), []);
  t.true(await pings(connection, 'probe'), 'ping answered');
  const counted = await invalidCounts(connection);

  const figures = tally(sender.ledger, handled([daemon]), deadLetters);
  report(t, 25, figures, { cases: seen, statusInvalid: counted, rangeErrors });
  t.is(figures.deadLettered, refusedCount);
  t.is(figures.duplicated, 0);
});

test.serial('#26 prototype keys: __proto__ and constructor.prototype payloads leave Object.prototype untouched, in the daemon and in what the handler receives', async (t) => {
  t.timeout(90_000);
  const { url, vhost, connection } = await freshVhost(t, 'fault-26');
  const daemon = await startDaemon(t, { url, args: ['--plugins', pluginFolder(t, ['probe.mjs']), '--host', HOST], env: { ...FAULT_SETTINGS } });
  const sender = new Sender(connection);
  const raw = await RawPublisher.open(connection, sender.ledger);
  t.teardown(() => raw.close());
  const rpc = await RawRpc.open(connection);
  t.teardown(() => rpc.close());
  const control = controlProducer(connection);
  interface PrototypeAnswer {
    keys: string[];
    polluted: boolean;
    pollutedValue: unknown;
    received: { prototype: string; ownKeys: string[]; inherited: string[]; polluted: unknown } | null;
  }
  const ask = async (): Promise<PrototypeAnswer> => (await control.rpcCommand('prototype', {}, { _key: 'probe/rr', _timeout: 10, _max_retry: 0 })).unwrap() as PrototypeAnswer;
  const before = await ask();
  t.false(before.polluted);

  // Raw JSON text: JSON.stringify would drop a __proto__ set by assignment.
  const P = '{"polluted":"yes","toString":"polluted"}';
  const payloads: Array<{ label: string; params: (id: string, seq: number) => string; wrap?: (body: string) => string }> = [
    { label: '__proto__ in the parameters', params: (id, seq) => probeParams(id, seq, `,"__proto__":${P}`) },
    { label: 'constructor.prototype in the parameters', params: (id, seq) => probeParams(id, seq, `,"constructor":{"prototype":${P}}`) },
    { label: 'both, nested in objects and arrays', params: (id, seq) => probeParams(id, seq, `,"a":{"__proto__":${P}},"b":[{"__proto__":${P}},{"constructor":{"prototype":${P}}}],"c":{"__proto__":{"__proto__":${P}}}`) },
    {
      label: '__proto__ in the body, content, fingerprint and _reserved',
      params: (id, seq) => probeParams(id, seq, `,"__proto__":${P}`),
      wrap: (body) => body.replace('{"type"', `{"__proto__":${P},"constructor":{"prototype":${P}},"type"`).replace('"fingerprint":{', `"fingerprint":{"__proto__":${P},`).replace('"content":{', `"content":{"__proto__":${P},`).replace('"_reserved":{', `"_reserved":{"__proto__":${P}`),
    },
  ];
  const received: Array<{ label: string; received: PrototypeAnswer['received']; polluted: boolean; keys: number }> = [];
  for (const p of payloads) {
    // As a message to the probe's handler (handled, in the ledger) ...
    const seq = sender.ledger.nextSeq();
    const id = `proto-${seq}`;
    const text = bodyText(p.params(id, seq));
    await raw.publish('probe/rr', p.wrap ? p.wrap(text) : text, { id, seq, contentType: 'application/json' });
    // ... and as the RPC `prototype`, which says what its handler received.
    const rseq = sender.ledger.nextSeq();
    const rid = `proto-rpc-${rseq}`;
    const rtext = bodyText(p.params(rid, rseq), { name: 'prototype', category: 'rpc' });
    const reply = await rpc.call('probe/rr', p.wrap ? p.wrap(rtext) : rtext, { id: rid });
    t.is(reply.type, 'success', `${p.label}: answered (${reply.message})`);
    const value = reply.value as PrototypeAnswer;
    received.push({ label: p.label, received: value.received, polluted: value.polluted, keys: value.keys.length });
    t.false(value.polluted, `${p.label}: Object.prototype not polluted`);
    t.deepEqual(value.keys, before.keys, `${p.label}: Object.prototype holds what it held`);
    t.is(value.received?.prototype, 'Object.prototype', `${p.label}: the handler's parameters are plain objects`);
    t.deepEqual(value.received?.inherited, [], `${p.label}: they inherit no key`);
    t.is(value.received?.polluted, null, `${p.label}: no polluted value reachable`);
  }
  // The daemon's own application too: a ping whose parameters carry the keys.
  const daemonPing = await rpc.call('postaged', bodyText(`{"__proto__":${P},"constructor":{"prototype":${P}}}`, { name: 'ping', category: 'rpc' }));
  t.is(daemonPing.type, 'success', 'the daemon answers a ping carrying them');

  await waitHandled(() => [daemon], sender.ledger);
  await queuesDrained(vhost);
  const after = await ask();
  t.false(after.polluted, 'Object.prototype of the daemon untouched');
  t.deepEqual(after.keys, before.keys);
  t.is(({} as Record<string, unknown>)['polluted'], undefined, 'nor polluted in the test process');
  t.deepEqual(troubles(daemon), []);
  t.true(await pings(connection, 'probe'), 'ping answered');

  const figures = tally(sender.ledger, handled([daemon]), await drainDeadLetters(connection));
  report(t, 26, figures, { payloads: payloads.length, objectPrototypeKeys: after.keys.length, pollutedAfter: after.polluted, received });
  t.is(figures.handled, payloads.length, 'every message payload handled');
  t.is(figures.deadLettered, 0);
});
