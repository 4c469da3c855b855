import test from 'ava';
import { parseListen } from '../../../daemon/listen-address.js';
import { readiness } from '../../../daemon/readiness.js';
import type { AppStatus } from '../../../daemon/host.js';

test('metrics.listen: port alone binds to 127.0.0.1; host, IPv6 and empty (off)', (t) => {
  t.deepEqual(parseListen('9464'), { host: '127.0.0.1', port: 9464 });
  t.deepEqual(parseListen('0.0.0.0:9464'), { host: '0.0.0.0', port: 9464 });
  t.deepEqual(parseListen('[::]:0'), { host: '::', port: 0 });
  t.deepEqual(parseListen('metrics.example:80'), { host: 'metrics.example', port: 80 });
  t.is(parseListen(''), undefined);
  t.is(parseListen('  '), undefined);
  for (const bad of ['x', ':9464', 'host:', '1:2:3', '99999', 'h:70000', '[::1]']) t.throws(() => parseListen(bad), undefined, bad);
});

const app = (name: string, state: string, extra: Partial<AppStatus> = {}): AppStatus =>
  ({ name, file: null, state, groups: [], queues: [], counts: { received: 0, handled: 0, failed: 0, rejected: 0, deadLettered: 0, unhandled: 0, retried: 0, timedOut: 0, duplicates: 0 }, ...extra }) as AppStatus;

test('readiness: running, connected, every enabled application consuming; stopped ones (disabled, quit) do not count', (t) => {
  t.like(readiness('running', 'connected', [app('postaged', 'running'), app('off', 'stopped', { reason: 'disabled by configuration' })]), { ready: true, reasons: [] });
  const r = readiness('running', 'reconnecting', [app('postaged', 'running'), app('bad', 'failed', { error: 'no default export' }), app('q', 'quarantined', { reason: 'crashed' }), app('r', 'recovering')]);
  t.false(r.ready);
  t.deepEqual(r.reasons, ['the broker connection is reconnecting', 'application bad is failed: no default export', 'application q is quarantined: crashed', 'application r is recovering']);
  t.deepEqual(readiness('restarting', 'connected', []).reasons, ['the daemon is restarting']);
});
