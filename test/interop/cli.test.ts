/**
 * Issue 11, item 5: the CLI and Python applications. A Python reply has an empty fingerprint,
 * Python applications have no `status` handler (and leave unknown RPCs unanswered), and they
 * do not bind `#daemons`, so `ps` never reaches them.
 *
 * A reply without a fingerprint is shown as such; `status` to an application that answers
 * `ping` but not `status` exits 1 saying it is "not a postaged daemon"; `ps` lists the
 * applications of a daemon's host that answer `ping` but are not daemons, marked so.
 */
import { freshVhost } from '../helpers/broker.js';
import { pluginCopies } from '../helpers/interop-apps.js';
import { postage } from '../helpers/postage-cli.js';
import { peerTest, startPythonApp } from '../helpers/python-peer.js';
import { startDaemon } from '../helpers/spawn.js';

const NO_FINGERPRINT = /no fingerprint|without (a )?fingerprint/i;

peerTest('ping a Python application: the CLI shows the fingerprint it sends as its value', async (t) => {
  const { vhost, url } = await freshVhost(t, 'interop-cli');
  const py = await startPythonApp(t, vhost, { name: 'py-echo' });
  const r = await postage(url, ['ping', py.uniqueKey, '--expect', '1', '--timeout', '10', '--json']);
  t.is(r.code, 0, r.stderr);
  const [reply] = JSON.parse(r.stdout) as Array<{ from: Record<string, string>; value: Record<string, string> }>;
  t.like(reply?.value, { name: 'py-echo', pid: String(py.pid), host: py.host, type: 'application' });
  t.deepEqual(reply?.from, {}, 'the reply itself carries no fingerprint');
});

// Issue 11 item 5: `?:?@?` for a Python responder.
peerTest('rpc on a fan-out key to a Python application shows its replies as replies without fingerprint, not ?:?@?', async (t) => {
  const { vhost, url } = await freshVhost(t, 'interop-cli');
  await startPythonApp(t, vhost, { name: 'py-echo' });
  const ok = await postage(url, ['rpc', 'py-echo', 'echo', '"x"', '--expect', '1', '--timeout', '10']);
  t.log(ok.stdout);
  t.is(ok.code, 0, ok.stderr);
  t.false(ok.stdout.includes('?:?@?'), ok.stdout);
  t.regex(ok.stdout, NO_FINGERPRINT);
  t.regex(ok.stdout, /: x$/m);
  const failed = await postage(url, ['rpc', 'py-echo', 'fail', '"bad"', '--expect', '1', '--timeout', '10']);
  t.log(failed.stderr);
  t.is(failed.code, 1);
  t.false(failed.stderr.includes('?:?@?'), failed.stderr);
  t.regex(failed.stderr, NO_FINGERPRINT);
  t.regex(failed.stderr, /exception ValueError: bad/);
});

// Issue 11 item 5: docs/cli.md says status to a plain application exits 1; a Python one never answers (exit 3).
peerTest('status to a Python application exits 1 and says it is not a postaged daemon', async (t) => {
  const { vhost, url } = await freshVhost(t, 'interop-cli');
  const py = await startPythonApp(t, vhost, { name: 'py-echo' });
  for (const key of ['py-echo/rr', py.uniqueKey]) {
    const r = await postage(url, ['status', key, '--timeout', '2']);
    t.log(`status ${key}: exit ${r.code} in ${r.ms} ms: ${r.stderr.trim()}`);
    t.is(r.code, 1, `status ${key}`);
    t.regex(r.stderr, /not a postaged daemon/);
  }
});

// Issue 11 item 5: Python applications are missing from `ps`, and nothing says why.
peerTest('ps lists a Python application on a daemon host as not a postaged daemon', async (t) => {
  const { vhost, url } = await freshVhost(t, 'interop-cli');
  const host = 'mixed-ps';
  const daemon = await startDaemon(t, { url, args: ['--plugins', pluginCopies(t, 'interop.mjs', ['ts-app']), '--no-watch'], env: { POSTAGE_HOSTNAME: host } });
  await startPythonApp(t, vhost, { name: 'py-echo', host });
  const r = await postage(url, ['ps', '--expect', '1', '--timeout', '5']);
  t.log(r.stdout + r.stderr);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, new RegExp(`\\n${host}\\s+${daemon.pid}\\s+postaged\\s`), 'the daemon is listed as before');
  t.regex(`${r.stdout}\n${r.stderr}`, /py-echo.*not a postaged daemon|not a postaged daemon.*py-echo/);
});
