/**
 * The real daemon speaking systemd's notification protocol to a socket of the test's own
 * (the same datagrams systemd would read; test/deploy/ checks them under a real systemd):
 * READY=1 once every plugin consumes, RELOADING=1 … READY=1 around a re-exec, STOPPING=1,
 * and WATCHDOG=1 pings at half of WATCHDOG_USEC that go on across the re-exec.
 */
import { brokerTest, freshVhost } from '../helpers/broker.js';
import { NotifySocket } from '../helpers/notify-socket.js';
import { controlProducer, pluginFolder, startDaemon } from '../helpers/spawn.js';

brokerTest('READY=1 after the plugins consume, RELOADING=1 then READY=1 around a restart, STOPPING=1, WATCHDOG=1 throughout', async (t) => {
  const { url, connection } = await freshVhost(t, 'postaged-notify');
  const socket = NotifySocket.open(t);
  const dir = pluginFolder(t, ['echo-mjs.mjs', 'echo-ts.ts', '_helper.ts']);
  const daemon = await startDaemon(t, { url, args: ['--plugins', dir, '--host', 'notify-host'], env: { NOTIFY_SOCKET: socket.path, WATCHDOG_USEC: '10000000' } });
  const ready = await socket.waitFor('READY', '1');
  t.log(`READY=1 STATUS=${ready.fields['STATUS']}`);
  t.regex(ready.fields['STATUS'] ?? '', /^generation 1: .*echo-mjs running.*echo-ts running/);
  // Ready means consuming: a plugin answers at once.
  const echo = await controlProducer(connection).rpcCommand('echo', { text: 'x' }, { _key: 'echo-ts/rr', _timeout: 5, _max_retry: 0 });
  t.true(echo.ok);

  await controlProducer(connection).sendCommand('restart', {}, { _key: `${daemon.pid}@notify-host` });
  const reloading = await socket.waitFor('RELOADING', '1');
  const ready2 = await socket.waitFor('READY', '1', 2);
  t.log(`RELOADING=1 at ${reloading.at.toFixed(0)} ms (${reloading.fields['STATUS']}), READY=1 again ${(ready2.at - reloading.at).toFixed(0)} ms later`);
  t.regex(reloading.fields['STATUS'] ?? '', /^restarting in place: restart command to /);
  t.regex(ready2.fields['STATUS'] ?? '', /^generation 2: /);
  const order = socket.messages.filter((m) => !m.fields['WATCHDOG']).map((m) => Object.keys(m.fields)[0]);
  t.deepEqual(order, ['READY', 'RELOADING', 'READY']);

  // Pings before and after the re-exec, never more than a watchdog period apart.
  await socket.waitFor('WATCHDOG', '1', socket.with('WATCHDOG', '1').length + 1);
  const pings = socket.with('WATCHDOG', '1').map((m) => m.at);
  t.true(pings.some((a) => a < reloading.at) && pings.some((a) => a > ready2.at), 'pings from both generations');
  const worst = Math.max(...pings.slice(1).map((a, i) => a - pings[i]!));
  // 10 s, as a service would set it (WatchdogSec= well above a restart; the unit has 30 s): a
  // ping goes out just before the exec, so the gap across it is the new image's start, which
  // took up to 7.4 s beside the parallel suite and a CPU hog (2 s and 6 s periods failed there
  // for a reason that is not a bug).
  t.log(`${pings.length} pings, longest gap ${worst.toFixed(0)} ms (the re-exec included; WATCHDOG_USEC 10 s)`);
  t.true(worst < 10_000, 'no gap reaches the watchdog period, even across the re-exec');

  daemon.signal('SIGTERM');
  const stopping = await socket.waitFor('STOPPING', '1');
  t.regex(stopping.fields['STATUS'] ?? '', /^stopping: SIGTERM/);
  t.deepEqual(await daemon.exited, { code: 0, signal: null });
});
