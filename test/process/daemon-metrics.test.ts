/**
 * postaged's metrics and probes (metrics.listen), scraped over HTTP from the real daemon:
 * exact counts after known traffic, counters carried across an in-place restart, /readyz
 * following the broker connection and the plugins, trace ids in the handlers' log lines.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { newTrace, runWithTrace, type Connection, type MessageResult } from 'postage';
import { brokerTest as test, freshVhost, rabbitmqctl } from '../helpers/broker.js';
import { get, metricsPort, scrape } from '../helpers/metrics.js';
import { controlProducer, pluginFolder, ROOT, spawnDaemon, startDaemon } from '../helpers/spawn.js';
import { waitFor } from '../helpers/wait-for.js';

function rpc(connection: Connection, key: string, command: string, parameters: unknown = {}): Promise<MessageResult> {
  return controlProducer(connection).rpcCommand(command, parameters, { _key: key, _timeout: 10, _max_retry: 0 });
}

const TRACED = 'app="traced"';

/** Runs bin/postaged-probe (the image's HEALTHCHECK) and resolves with its exit code and output. */
function probe(...args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    execFile(path.join(ROOT, 'bin', 'postaged-probe'), args, { env: { ...process.env, POSTAGED_METRICS_LISTEN: '' } }, (err, stdout) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout });
    });
  });
}

/** The message counters of `traced`, by short name. */
function counts(m: Map<string, number>): Record<string, number | undefined> {
  const out: Record<string, number | undefined> = {};
  for (const c of ['received', 'handled', 'failed', 'rejected', 'dead_lettered', 'unhandled', 'retried', 'timed_out', 'duplicates']) out[c] = m.get(`postaged_messages_${c}_total{${TRACED}}`);
  out['invalid_decode'] = m.get(`postaged_messages_invalid_total{${TRACED},reason="decode"}`);
  out['handler_message_handled'] = m.get(`postaged_handler_duration_seconds_count{${TRACED},category="message",outcome="handled"}`);
  out['handler_message_failed'] = m.get(`postaged_handler_duration_seconds_count{${TRACED},category="message",outcome="failed"}`);
  out['handler_rpc_handled'] = m.get(`postaged_handler_duration_seconds_count{${TRACED},category="rpc",outcome="handled"}`);
  out['rpc_client_echo_ok'] = m.get(`postaged_rpc_client_duration_seconds_count{${TRACED},command="echo",outcome="ok"}`);
  return out;
}

test('exact counts after known traffic, the same after an in-place restart and counting on; handler log lines carry the trace id of a traced message', async (t) => {
  const { url, connection } = await freshVhost(t, 'postage-metrics');
  const dir = pluginFolder(t, ['traced.mjs']);
  const daemon = await startDaemon(t, { url, args: ['--plugins', dir, '--metrics-listen', '0'], env: { POSTAGED_MAX_ATTEMPTS: '1', POSTAGED_CONCURRENCY: '2' } });
  const port = await metricsPort(daemon);
  const producer = controlProducer(connection);

  // 3 `ok` (the first in a known trace), 2 `boom` (dead-lettered: one attempt), 1 body that is
  // not JSON, 2 `echo` RPCs, 1 `relay` RPC (which calls `echo` again: an RPC of the plugin; hence
  // concurrency 2, or the relay would wait for a reply that waits behind it).
  const origin = newTrace();
  await runWithTrace(origin, () => producer.sendCommand('ok', { n: 1 }, { _key: 'traced/rr' }));
  for (const n of [2, 3]) await producer.sendCommand('ok', { n }, { _key: 'traced/rr' });
  for (let i = 0; i < 2; i++) await producer.sendCommand('boom', {}, { _key: 'traced/rr' });
  const ch = await connection.createChannel();
  ch.publish('', 'traced', Buffer.from('not json'), { contentType: 'application/json' });
  await ch.close();
  for (const text of ['a', 'b']) t.true((await rpc(connection, 'traced/rr', 'echo', text)).ok);
  const relayTrace = newTrace();
  const relayed = await runWithTrace(relayTrace, () => rpc(connection, 'traced/rr', 'relay', 'c'));
  t.true(relayed.ok, relayed.message);

  const expected = {
    received: 10,
    handled: 7,
    failed: 2,
    rejected: 0,
    dead_lettered: 3,
    unhandled: 0,
    retried: 0,
    timed_out: 0,
    duplicates: 0,
    invalid_decode: 1,
    handler_message_handled: 3,
    handler_message_failed: 2,
    handler_rpc_handled: 4,
    rpc_client_echo_ok: 1,
  };
  const before = await waitFor('every message counted', async () => {
    const m = await scrape(port);
    return counts(m)['received'] === 10 && counts(m)['dead_lettered'] === 3 && counts(m)['handled'] === 7 ? m : undefined;
  }, 30_000, 100);
  t.deepEqual(counts(before), expected);
  t.is(before.get(`postaged_application_state{${TRACED},state="running"}`), 1);
  t.is(before.get('postaged_broker_connected'), 1);
  t.is(before.get('postaged_generation'), 1);
  t.is(before.get('postaged_restarts_total'), 0);
  t.is(before.get(`postaged_prefetch_limit{${TRACED}}`), 50);
  t.true((before.get('process_resident_memory_bytes') ?? 0) > 0, 'process metrics are there');

  // The trace: the handler of the first `ok` logged in the sender's trace, in a span of its own;
  // the relay's inner `echo` ran in the relay's trace and answered with it.
  const ok1 = await daemon.waitForLine((l) => l.message === 'traced ok' && l['n'] === 1);
  t.is(ok1['trace_id'], origin.traceId);
  t.regex(String(ok1['span_id']), /^[0-9a-f]{16}$/);
  t.not(ok1['span_id'], origin.spanId);
  t.is(relayed.trace?.traceId, relayTrace.traceId, 'the RPC reply carries the trace back');
  t.like(relayed.value as object, { inner: { traceId: relayTrace.traceId } });
  const relayLine = daemon.find('traced relayed')[0];
  t.is(relayLine?.['trace_id'], relayTrace.traceId);
  t.is(daemon.find((l) => l.message === 'traced echo' && l['trace_id'] === relayTrace.traceId).length, 1, "the inner echo's log line is in the relay's trace");
  // Messages sent outside any trace are handled outside any: their lines carry no trace id.
  const untraced = daemon.find((l) => l.message === 'traced ok' && l['n'] !== 1);
  t.is(untraced.length, 2);
  for (const line of untraced) t.is(line['trace_id'], undefined, `traced ok ${String(line['n'])} carries no trace id`);

  // An in-place restart: same counters, then counting on from there.
  await producer.sendCommand('restart', {}, { _key: 'postaged' });
  await daemon.waitForLine('postaged ready', { count: 2, timeout: 30_000 });
  const port2 = await metricsPort(daemon, 2);
  const after = await scrape(port2);
  t.is(after.get('postaged_generation'), 2);
  t.is(after.get('postaged_restarts_total'), 1);
  t.deepEqual(counts(after), expected, 'carried across the re-exec, not reset');
  await producer.sendCommand('ok', { n: 4 }, { _key: 'traced/rr' });
  const more = await waitFor('the next message counted', async () => {
    const m = await scrape(port2);
    return counts(m)['handled'] === 8 ? m : undefined;
  }, 30_000, 100);
  t.deepEqual(counts(more), { ...expected, received: 11, handled: 8, handler_message_handled: 4 });
});

test('/readyz is 503 naming the broker while the connection is gone and 200 again after it recovers; /healthz stays 200', async (t) => {
  const { vhost, url } = await freshVhost(t, 'postage-ready');
  const daemon = await startDaemon(t, { url, args: ['--plugins', pluginFolder(t, ['echo-mjs.mjs']), '--metrics-listen', '127.0.0.1:0'] });
  const port = await metricsPort(daemon);
  const ready = await waitFor('ready', async () => ((await get(port, '/readyz')).status === 200 ? get(port, '/readyz') : undefined), 30_000);
  t.like(JSON.parse(ready.body), { status: 'ready', broker: 'connected', reasons: [] });
  t.is(ready.contentType, 'application/json');
  t.is((await probe(`127.0.0.1:${port}`)).code, 0, 'postaged-probe: ready');

  // The connection gone, and kept away: guest loses the vhost, its connections are closed.
  await rabbitmqctl('clear_permissions', '-p', vhost, 'guest');
  t.teardown(() => rabbitmqctl('set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*').catch(() => undefined));
  await rabbitmqctl('close_all_connections', '-p', vhost, 'metrics test: broker connection gone');
  const down = await waitFor('/readyz 503', async () => {
    const r = await get(port, '/readyz');
    return r.status === 503 ? r : undefined;
  }, 30_000, 50);
  const body = JSON.parse(down.body) as { status: string; broker: string; reasons: string[] };
  t.is(body.status, 'not ready');
  t.not(body.broker, 'connected');
  t.true(body.reasons.some((r) => /^the broker connection is (reconnecting|connecting)$/.test(r)), body.reasons.join('; '));
  const health = await get(port, '/healthz');
  t.is(health.status, 200, 'alive while not ready');
  t.like(JSON.parse(health.body), { status: 'ok', pid: daemon.pid, generation: 1 });
  t.is((await scrape(port)).get('postaged_broker_connected'), 0);
  const notReady = await probe(`127.0.0.1:${port}`);
  t.is(notReady.code, 1, 'postaged-probe: not ready');
  t.regex(notReady.stdout, /^503 /);
  t.is((await probe('--live', `0.0.0.0:${port}`)).code, 0, 'postaged-probe --live: alive (asked on the loopback)');

  await rabbitmqctl('set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*');
  const back = await waitFor('/readyz 200 again', async () => {
    const r = await get(port, '/readyz');
    return r.status === 200 ? r : undefined;
  }, 60_000, 100);
  t.like(JSON.parse(back.body), { status: 'ready', broker: 'connected' });
  const m = await scrape(port);
  t.is(m.get('postaged_broker_connected'), 1);
  t.true((m.get('postaged_broker_reconnects_total') ?? 0) >= 1);
});

test('a plugin that fails makes /readyz 503 naming it and is counted; the listener binds to 127.0.0.1 by default; unknown paths are 404', async (t) => {
  const { url } = await freshVhost(t, 'postage-ready');
  const daemon = await startDaemon(t, { url, args: ['--plugins', pluginFolder(t, ['echo-mjs.mjs', 'bad-export.mjs']), '--metrics-listen', '0'] });
  const listening = await daemon.waitForLine('metrics listening');
  t.is(listening['address'], '127.0.0.1');
  const port = Number(listening['port']);
  const r = await get(port, '/readyz');
  t.is(r.status, 503);
  const body = JSON.parse(r.body) as { reasons: string[]; applications: Array<{ name: string; state: string }> };
  t.true(body.reasons.some((x) => x.startsWith('application bad-export is failed')), body.reasons.join('; '));
  t.deepEqual(body.applications.map((a) => `${a.name}:${a.state}`).sort(), ['bad-export:failed', 'echo-mjs:running', 'postaged:running']);
  const m = await scrape(port);
  t.is(m.get('postaged_plugin_load_failures_total{app="bad-export"}'), 1);
  t.is(m.get('postaged_application_state{app="bad-export",state="failed"}'), 1);
  t.is((await get(port, '/nothing')).status, 404);
  t.is((await probe()).code, 1, 'postaged-probe without a listener to ask fails');
});

test('a bad metrics.listen is a configuration error (exit 78) naming the key', async (t) => {
  const daemon = spawnDaemon(t, { url: 'amqp://guest:guest@127.0.0.1:1/none', args: ['--plugins', pluginFolder(t, []), '--metrics-listen', 'localhost:99999'] });
  const exit = await daemon.exited;
  t.is(exit.code, 78);
  t.regex(daemon.stderr, /metrics\.listen/);
});
