/**
 * Interop, the directions that work today: ping, echo, RPC, error and exception results,
 * join/leave, restart and quit, between the Python peer (Postage 1.2.1 on the wire) and
 * TypeScript applications (library), postaged, and the CLI.
 */
import { GenericApplicationExchange, GenericProducer, type Connection, type MessageResult } from 'postage';
import { freshVhost } from '../helpers/broker.js';
import { startTsEcho, pluginCopies } from '../helpers/interop-apps.js';
import { postage } from '../helpers/postage-cli.js';
import { peerTest, startPythonApp, startPythonClient } from '../helpers/python-peer.js';
import { startDaemon } from '../helpers/spawn.js';
import { waitFor } from '../helpers/wait-for.js';

const TEXT = 'héllo ✓ 😀 "quoted" \\ \u0007 end';

function producer(connection: Connection): GenericProducer {
  class ToPython extends GenericProducer {
    static override eks = [[GenericApplicationExchange, 'unused']] as const;
  }
  return new ToPython({ connection, fingerprint: { name: 'ts-caller', type: 'test' } });
}

peerTest('Python calls a TypeScript application: ping, echo, error, exception, and an unknown RPC answered with an error', async (t) => {
  const { vhost, connection } = await freshVhost(t, 'interop');
  const app = await startTsEcho(t, connection, 'ts-echo', { host: 'ts-host' });
  const py = await startPythonClient(t, vhost);

  const ping = await py.rpc('ts-echo/rr', 'ping', {}, { timeout: 10, maxRetry: 0 });
  t.true(ping.ok);
  t.like(ping.value as object, { name: 'ts-echo', type: 'application', pid: String(process.pid), host: 'ts-host', vhost });
  // Python sent no correlation id; the reply copies none and goes to Python's own reply queue.
  t.is(ping.replyProperties?.['correlation_id'], undefined);
  t.is(ping.tries, 1);
  t.regex(ping.replyQueues[0] ?? '', /^amq\.gen-/);

  const echo = await py.rpc('ts-echo', 'echo', { text: TEXT, list: [1, 2.5, null, true], nested: { a: {} } }, { timeout: 10, maxRetry: 0 });
  t.true(echo.ok);
  t.deepEqual(echo.value, { text: TEXT, list: [1, 2.5, null, true], nested: { a: {} } });

  const error = await py.rpc(app.addresses.instanceKey, 'error', 'no such thing', { timeout: 10, maxRetry: 0 });
  t.false(error.ok);
  t.like(error.result.content, { type: 'error', value: null, message: 'no such thing' });

  const exception = await py.rpc(`ts-echo@ts-host/rr`, 'fail', 'out of range', { timeout: 10, maxRetry: 0 });
  t.false(exception.ok);
  t.like(exception.result.content, { type: 'exception', value: 'RangeError', message: 'out of range' });

  // Python Postage left an unknown RPC unanswered (the caller timed out 5 times); here it is an error.
  const unknown = await py.rpc('ts-echo/rr', 'nonexistent', {}, { timeout: 10, maxRetry: 0 });
  t.false(unknown.ok);
  t.is(unknown.result.content.type, 'error');
  t.regex(unknown.result.content.message, /unknown RPC command 'nonexistent'/);
  t.log(`python → typescript RPC round trips: ping ${ping.ms} ms, echo ${echo.ms} ms`);
});

peerTest('Python message_echo reaches a TypeScript handler with the text intact (\\u-escaped JSON)', async (t) => {
  const { vhost, connection } = await freshVhost(t, 'interop');
  const app = await startTsEcho(t, connection, 'ts-echo');
  const py = await startPythonClient(t, vhost);
  await py.send('ts-echo', 'echo', { text: TEXT });
  await py.send('ts-echo/rr', 'echo', 'a plain string');
  await waitFor('two echoes', () => app.echoes.length >= 2);
  t.deepEqual(app.echoes, [{ text: TEXT }, 'a plain string']);
});

peerTest('Python join_group / leave_group on a TypeScript application: N#G reaches it only while it is a member', async (t) => {
  const { vhost, connection } = await freshVhost(t, 'interop');
  await startTsEcho(t, connection, 'ts-echo');
  const py = await startPythonClient(t, vhost);
  await py.send('ts-echo', 'join_group', { group_name: 'blue' });
  const member = await waitFor('ts-echo#blue answers', async () => {
    const r = await py.rpc('ts-echo#blue', 'ping', {}, { timeout: 1, maxRetry: 0 });
    return r.ok ? r : undefined;
  });
  t.like(member.value as object, { name: 'ts-echo' });
  await py.send('ts-echo', 'leave_group', { group_name: 'blue' });
  await waitFor('ts-echo#blue is silent', async () => !(await py.rpc('ts-echo#blue', 'ping', {}, { timeout: 1, maxRetry: 0 })).ok);
  t.pass();
});

peerTest('several Python callers at once get their own answers (a reply queue each)', async (t) => {
  const { vhost, connection } = await freshVhost(t, 'interop');
  await startTsEcho(t, connection, 'ts-echo');
  const py = await startPythonClient(t, vhost);
  const results = await Promise.all(Array.from({ length: 8 }, (_, i) => py.rpc('ts-echo/rr', 'echo', { i }, { timeout: 10, maxRetry: 0 })));
  t.deepEqual(
    results.map((r) => r.value),
    Array.from({ length: 8 }, (_, i) => ({ i })),
  );
  t.is(new Set(results.flatMap((r) => r.replyQueues)).size, 8, 'a fresh reply queue per call');
});

peerTest('TypeScript calls a Python application: ping, echo, error and exception; the request carries what Python needs', async (t) => {
  const { vhost, connection } = await freshVhost(t, 'interop');
  const py = await startPythonApp(t, vhost, { name: 'py-echo' });
  const p = producer(connection);

  const ping = await p.rpcCommand('ping', {}, { _key: 'py-echo/rr', _timeout: 10, _max_retry: 0 });
  t.true(ping.ok, ping.message);
  t.like(ping.value as object, { name: 'py-echo', type: 'application', pid: String(py.pid), host: py.host, vhost });
  t.deepEqual(ping.body.fingerprint, {}, 'Python replies carry an empty fingerprint');

  const echo = await p.rpcCommand('echo', { text: TEXT }, { _key: py.uniqueKey, _timeout: 10, _max_retry: 0 });
  t.true(echo.ok, echo.message);
  t.deepEqual(echo.value, { text: TEXT });

  const error: MessageResult = await p.rpcCommand('error', 'refused', { _key: 'py-echo', _timeout: 10, _max_retry: 0 });
  t.false(error.ok);
  t.is(error.resultType, 'error');
  t.is(error.message, 'refused');

  const exception: MessageResult = await p.rpcCommand('fail', 'bad value', { _key: `py-echo@${py.host}/rr`, _timeout: 10, _max_retry: 0 });
  t.false(exception.ok);
  t.is(exception.resultType, 'exception');
  t.is(exception.value, 'ValueError');
  t.is(exception.message, 'bad value');

  // What Python saw: a reply_to it can publish to, and a body it can read.
  const request = py.deliveries('echo')[0]!;
  const props = request['properties'] as Record<string, unknown>;
  t.regex(String(props['reply_to']), /^amq\.rabbitmq\.reply-to\./);
  t.is(props['content_type'], 'application/json');
  t.like(request['body'] as object, { type: 'command', name: 'echo', category: 'rpc', version: '2', content: { parameters: { text: TEXT } } });
});

peerTest('TypeScript calls an RPC the Python application does not have: no answer, TimeoutError after every try', async (t) => {
  const { vhost, connection } = await freshVhost(t, 'interop');
  const py = await startPythonApp(t, vhost, { name: 'py-echo' });
  // A ping first: the caller's reply channel open and its exchange declared, Python consuming.
  // Each try's 0.5 s covers the declaration too, which took longer than that beside the
  // parallel suite and a CPU hog, so neither try was ever published.
  const pong = await producer(connection).rpcCommand('ping', {}, { _key: 'py-echo/rr', _timeout: 20, _max_retry: 0 });
  t.true(pong.ok, pong.message);
  const started = Date.now();
  const r = await producer(connection).rpcCommand('nonexistent', {}, { _key: 'py-echo/rr', _timeout: 0.5, _max_retry: 1 });
  t.false(r.ok);
  t.is(r.value, 'TimeoutError');
  // Each try reached Python, which acked it and said nothing.
  await py.waitForEvent((e) => e.event === 'delivery' && (e['body'] as { name?: string }).name === 'nonexistent', { count: 2 });
  t.is(py.find('unmanaged-exception').length, 0);
  t.log(`two tries of 0.5 s: ${Date.now() - started} ms`);
});

peerTest('TypeScript message_echo, join_group and leave_group to a Python application', async (t) => {
  const { vhost, connection } = await freshVhost(t, 'interop');
  const py = await startPythonApp(t, vhost, { name: 'py-echo' });
  const p = producer(connection);
  await p.sendCommand('echo', { text: TEXT }, { _key: 'py-echo' });
  const echo = await py.waitForEvent('echo');
  t.deepEqual(echo['parameters'], { text: TEXT });

  await p.sendCommand('join_group', { group_name: 'blue' }, { _key: py.uniqueKey });
  await py.waitForEvent('joined');
  const member = await p.rpcCommand('ping', {}, { _key: 'py-echo#blue', _timeout: 10, _max_retry: 0 });
  t.true(member.ok, member.message);
  await p.sendCommand('leave_group', { group_name: 'blue' }, { _key: 'py-echo' });
  await py.waitForEvent('left');
  const gone = await p.rpcCommand('ping', {}, { _key: 'py-echo#blue', _timeout: 0.5, _max_retry: 0 });
  t.is(gone.value, 'TimeoutError');
});

peerTest('restart from TypeScript re-execs the Python process (same PID); quit ends the whole process', async (t) => {
  const { vhost, connection } = await freshVhost(t, 'interop');
  const py = await startPythonApp(t, vhost, { name: 'py-echo' });
  const p = producer(connection);
  await p.sendCommand('restart', {}, { _key: py.uniqueKey });
  await py.waitForEvent((e) => e.event === 'ready' && e['generation'] === 2);
  t.is(py.exit, undefined, 'same process: re-exec, not a new one');
  const ping = await p.rpcCommand('ping', {}, { _key: py.uniqueKey, _timeout: 10, _max_retry: 0 });
  t.is((ping.value as { pid?: string }).pid, String(py.pid));
  await p.sendCommand('quit', {}, { _key: 'py-echo' });
  const exit = await py.waitForExit();
  t.deepEqual(exit, { code: 0, signal: null });
});

peerTest('Python calls postaged and its plugins: ping, echo, error, exception, unknown RPC, message, join/leave', async (t) => {
  const { vhost, url } = await freshVhost(t, 'interop');
  const host = 'ts-daemon';
  const daemon = await startDaemon(t, { url, args: ['--plugins', pluginCopies(t, 'interop.mjs', ['interop'], ['plugins/rpc-echo.ts']), '--no-watch'], env: { POSTAGE_HOSTNAME: host } });
  const py = await startPythonClient(t, vhost);
  const opts = { timeout: 10, maxRetry: 0 };

  const ping = await py.rpc(`${daemon.pid}@${host}`, 'ping', {}, opts);
  t.true(ping.ok);
  t.like(ping.value as object, { pid: String(daemon.pid), host });
  const own = await py.rpc('postaged/rr', 'ping', {}, opts);
  t.like(own.value as object, { name: 'postaged', pid: String(daemon.pid) });

  t.deepEqual((await py.rpc('rpc-echo/rr', 'echo', { text: TEXT }, opts)).value, { text: TEXT });
  t.like((await py.rpc('interop', 'error', 'nope', opts)).result.content, { type: 'error', message: 'nope' });
  t.like((await py.rpc(`interop:${daemon.pid}@${host}`, 'fail', 'too far', opts)).result.content, { type: 'exception', value: 'RangeError', message: 'too far' });
  const unknown = await py.rpc('rpc-echo/rr', 'nonexistent', {}, opts);
  t.like(unknown.result.content, { type: 'error' });

  await py.send('interop', 'echo', { text: TEXT });
  const logged = await daemon.waitForLine('interop echo');
  t.deepEqual(logged['parameters'], { text: TEXT });

  await py.send('interop', 'join_group', { group_name: 'blue' });
  await waitFor('interop#blue answers', async () => (await py.rpc('interop#blue', 'ping', {}, { timeout: 1, maxRetry: 0 })).ok);
  await py.send(`interop@${host}`, 'leave_group', { group_name: 'blue' });
  await waitFor('interop#blue is silent', async () => !(await py.rpc('interop#blue', 'ping', {}, { timeout: 1, maxRetry: 0 })).ok);
});

peerTest('the CLI to a Python application: ping, rpc, an exception (exit 1), send, join, leave, restart and quit', async (t) => {
  const { vhost, url } = await freshVhost(t, 'interop');
  const py = await startPythonApp(t, vhost, { name: 'py-echo' });

  const ping = await postage(url, ['ping', 'py-echo', '--expect', '1', '--timeout', '10']);
  t.is(ping.code, 0, ping.stderr);
  t.regex(ping.stdout, new RegExp(`\\npy-echo\\s+${py.pid}\\s+${py.host}\\s+application\\s`));

  const rpc = await postage(url, ['rpc', 'py-echo/rr', 'echo', JSON.stringify(TEXT), '--timeout', '10']);
  t.is(rpc.code, 0, rpc.stderr);
  // A control character from a remote reply is shown escaped: a responder may not drive the terminal.
  t.is(rpc.stdout, `${TEXT.replace('\u0007', '\\u0007')}\n`);

  const fail = await postage(url, ['rpc', py.uniqueKey, 'fail', '"bad"', '--timeout', '10']);
  t.is(fail.code, 1);
  t.regex(fail.stderr, /exception ValueError: bad/);

  const send = await postage(url, ['send', 'py-echo', 'echo', '{"n": 1}']);
  t.is(send.code, 0, send.stderr);
  t.deepEqual((await py.waitForEvent('echo'))['parameters'], { n: 1 });

  t.is((await postage(url, ['join', 'py-echo', 'blue'])).code, 0);
  await py.waitForEvent('joined');
  t.is((await postage(url, ['ping', 'py-echo#blue', '--expect', '1', '--timeout', '10'])).code, 0);
  t.is((await postage(url, ['leave', 'py-echo', 'blue'])).code, 0);
  await py.waitForEvent('left');
  t.is((await postage(url, ['ping', 'py-echo#blue', '--timeout', '1'])).code, 3);

  t.is((await postage(url, ['restart', py.uniqueKey])).code, 0);
  await py.waitForEvent((e) => e.event === 'ready' && e['generation'] === 2);
  t.is((await postage(url, ['quit', py.uniqueKey])).code, 0);
  t.deepEqual(await py.waitForExit(), { code: 0, signal: null });
});
