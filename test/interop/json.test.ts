/**
 * Issue 11, item 4: Python's JSON. `json.dumps` writes `NaN`, `Infinity` and `-Infinity`
 * bare (allow_nan=True) and reads them back; Python integers have no size limit.
 *
 * The default `JsonEncoder` reads NaN/±Infinity and writes them back as Python writes them;
 * `new JsonEncoder({ bigint: true })` reads integers beyond 2^53 as `bigint` and writes
 * `bigint` as JSON integers.
 */
import { GenericApplicationExchange, GenericProducer, JsonEncoder, type Connection, type Encoder } from 'postage';
import { freshVhost } from '../helpers/broker.js';
import { pluginCopies, startTsEcho } from '../helpers/interop-apps.js';
import { peerTest, startPythonApp, startPythonClient } from '../helpers/python-peer.js';
import { startDaemon } from '../helpers/spawn.js';
import { waitFor } from '../helpers/wait-for.js';

const FLOATS = { nan: Number.NaN, inf: Number.POSITIVE_INFINITY, ninf: Number.NEGATIVE_INFINITY, list: [Number.NaN, 1.5] };
const BIG = 2n ** 64n + 1n;

function producer(connection: Connection, encoder?: Encoder): GenericProducer {
  class ToPython extends GenericProducer {
    static override eks = [[GenericApplicationExchange, 'unused']] as const;
  }
  return new ToPython({ connection, fingerprint: { name: 'ts-caller', type: 'test' }, ...(encoder ? { encoder } : {}) });
}

/** `new JsonEncoder({ bigint: true })`: the opt-in lossless integers (an option JsonEncoder does not know today). */
function losslessEncoder(): Encoder {
  return new JsonEncoder({ bigint: true } as ConstructorParameters<typeof JsonEncoder>[0]);
}

peerTest('by default, integers beyond 2^53 from Python come back as the nearest double', async (t) => {
  const { vhost, connection } = await freshVhost(t, 'interop-json');
  await startTsEcho(t, connection, 'ts-echo');
  const py = await startPythonClient(t, vhost);
  const r = await py.rpc('ts-echo/rr', 'echo', { big: BIG, safe: 2 ** 53 }, { timeout: 10, maxRetry: 0 });
  t.true(r.ok);
  // JavaScript writes the double's shortest form, which Python reads as that exact integer.
  t.deepEqual(r.value, { big: BigInt(String(Number(BIG))), safe: 2 ** 53 });
  t.not((r.value as { big: bigint }).big, BIG);
});

// Issue 11 item 4: Python's NaN/Infinity must be decoded, and written back so that Python reads them.
peerTest('Python RPC with NaN and ±Infinity to a TypeScript application: answered once, the values come back as Python wrote them', async (t) => {
  const { vhost, connection } = await freshVhost(t, 'interop-json');
  await startTsEcho(t, connection, 'ts-echo');
  const py = await startPythonClient(t, vhost);
  const r = await py.rpc('ts-echo/rr', 'echo', FLOATS, { timeout: 30, maxRetry: 1 });
  t.log(`ok ${r.ok} after ${r.tries} tries: ${r.raw ?? '(no reply)'}`);
  t.true(r.ok, 'answered');
  t.is(r.tries, 1);
  t.deepEqual(r.value, FLOATS);
  t.regex(r.raw ?? '', /\bNaN\b.*\bInfinity\b.*-Infinity\b/, 'written as Python writes them');
});

// Issue 11 item 4: the same through postaged, where today the message is dead-lettered and Python retries.
peerTest('Python RPC with NaN to a postaged plugin is answered, not dead-lettered', async (t) => {
  const { vhost, url } = await freshVhost(t, 'interop-json');
  const daemon = await startDaemon(t, { url, args: ['--plugins', pluginCopies(t, 'interop.mjs', ['ts-echo']), '--no-watch'] });
  const py = await startPythonClient(t, vhost);
  const r = await py.rpc('ts-echo/rr', 'echo', FLOATS, { timeout: 30, maxRetry: 1 });
  t.log(`tries ${r.tries}; daemon warnings: ${daemon.find((l) => l.level === 'warn').map((l) => l.message).join('; ')}`);
  t.deepEqual([r.ok, r.tries], [true, 1]);
  t.deepEqual(r.value, FLOATS);
});

// Issue 11 item 4: a fire-and-forget message with NaN reaches the handler.
peerTest('a Python message with NaN and Infinity reaches the TypeScript handler with those values', async (t) => {
  const { vhost, connection } = await freshVhost(t, 'interop-json');
  const app = await startTsEcho(t, connection, 'ts-echo');
  const py = await startPythonClient(t, vhost);
  await py.send('ts-echo', 'echo', FLOATS);
  // Wait until the message was dealt with either way (handled, or refused as undecodable).
  await waitFor('the message handled or refused', () => app.stats.handled + app.stats.deadLettered + Object.keys(app.stats.invalid).length > 0);
  t.deepEqual(app.stats.invalid, {}, 'not refused as invalid');
  t.deepEqual(app.echoes, [FLOATS]);
});

// Issue 11 item 4: replies from Python may carry NaN.
peerTest('a Python reply with NaN and ±Infinity is read by the TypeScript caller', async (t) => {
  const { vhost, connection } = await freshVhost(t, 'interop-json');
  await startPythonApp(t, vhost, { name: 'py-floats' });
  const r = await producer(connection).rpcCommand('floats', {}, { _key: 'py-floats/rr', _timeout: 10, _max_retry: 0 });
  t.true(r.ok, `${r.resultType}: ${r.message}`);
  t.deepEqual(r.value, { nan: Number.NaN, inf: Number.POSITIVE_INFINITY, ninf: Number.NEGATIVE_INFINITY, one: 1.5 });
});

// Issue 11 item 4: TypeScript writes non-finite numbers the way Python reads them (not null).
peerTest('NaN and ±Infinity sent by TypeScript reach Python as floats, not None', async (t) => {
  const { vhost, connection } = await freshVhost(t, 'interop-json');
  const py = await startPythonApp(t, vhost, { name: 'py-echo' });
  await producer(connection).sendCommand('echo', FLOATS, { _key: 'py-echo' });
  const echo = await py.waitForEvent('echo');
  t.log(String((py.deliveries('echo')[0] as { raw?: string }).raw));
  t.deepEqual(echo['parameters'], FLOATS);
});

// Issue 11 item 4: opt-in lossless integers, Python calling TypeScript.
peerTest('with JsonEncoder({ bigint: true }) integers beyond 2^53 from Python come back exact', async (t) => {
  const { vhost, connection } = await freshVhost(t, 'interop-json');
  const app = await startTsEcho(t, connection, 'ts-echo', { encoder: losslessEncoder() });
  const py = await startPythonClient(t, vhost);
  const value = { big: BIG, negative: -(2n ** 70n), safe: 42, float: 0.5 };
  const r = await py.rpc('ts-echo/rr', 'echo', value, { timeout: 10, maxRetry: 0 });
  t.true(r.ok);
  t.deepEqual(r.value, value);
  await py.send('ts-echo', 'echo', { big: BIG });
  await waitFor('echo handled', () => app.echoes.length > 0);
  t.is(typeof (app.echoes[0] as { big: unknown }).big, 'bigint', 'the handler sees a bigint');
});

// Issue 11 item 4: opt-in lossless integers, TypeScript calling Python.
peerTest('with JsonEncoder({ bigint: true }) a TypeScript caller sends and reads integers beyond 2^53 exactly', async (t) => {
  const { vhost, connection } = await freshVhost(t, 'interop-json');
  await startPythonApp(t, vhost, { name: 'py-echo' });
  const r = await producer(connection, losslessEncoder()).rpcCommand('echo', { big: BIG, small: 7 }, { _key: 'py-echo/rr', _timeout: 10, _max_retry: 0 });
  t.true(r.ok, r.message);
  t.deepEqual(r.value, { big: BIG, small: 7 });
});
