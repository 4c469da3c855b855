import test from 'ava';
import { SystemdNotifier } from '../../../daemon/sd-notify.js';
import { NotifySocket } from '../../helpers/notify-socket.js';

function recorder(): { warnings: string[]; log: { warn: (m: string) => void } } {
  const warnings: string[] = [];
  return { warnings, log: { warn: (m: string) => void warnings.push(m) } };
}

test('no NOTIFY_SOCKET: no notifier at all', (t) => {
  t.is(SystemdNotifier.fromEnv({}, recorder().log), undefined);
});

test('an abstract NOTIFY_SOCKET is refused with a warning (unix-dgram cannot address it)', (t) => {
  const r = recorder();
  t.is(SystemdNotifier.fromEnv({ NOTIFY_SOCKET: '@/org/freedesktop/systemd1/notify' }, r.log), undefined);
  t.regex(r.warnings[0] ?? '', /abstract socket/);
});

test('phases become READY=1, RELOADING=1 (with MONOTONIC_USEC) and STOPPING=1, each with a one-line STATUS', async (t) => {
  const socket = NotifySocket.open(t);
  const n = SystemdNotifier.fromEnv({ NOTIFY_SOCKET: socket.path }, recorder().log)!;
  t.teardown(() => n.close());
  n.phase('starting', 'ignored');
  n.phase('running', 'generation 1: a running,\nb running');
  n.phase('restarting', 'restart command to a');
  n.phase('running', 'generation 2');
  n.phase('stopping', 'SIGTERM');
  await socket.waitFor('STOPPING', '1');
  t.deepEqual(
    socket.messages.map((m) => Object.keys(m.fields)[0]),
    ['READY', 'RELOADING', 'READY', 'STOPPING'],
  );
  t.is(socket.messages[0]!.fields['STATUS'], 'generation 1: a running, b running');
  const mono = BigInt(socket.messages[1]!.fields['MONOTONIC_USEC'] ?? '0');
  const now = process.hrtime.bigint() / 1000n;
  t.true(mono > 0n && mono <= now && now - mono < 10_000_000n, `MONOTONIC_USEC ${mono} is CLOCK_MONOTONIC (now ${now})`);
  t.is(socket.messages[1]!.fields['STATUS'], 'restarting in place: restart command to a');
});

test('the watchdog pings WATCHDOG=1 every half of WATCHDOG_USEC from a timer, and a blocked loop stops the pings', async (t) => {
  const socket = NotifySocket.open(t);
  const n = SystemdNotifier.fromEnv({ NOTIFY_SOCKET: socket.path, WATCHDOG_USEC: '200000' }, recorder().log)!;
  t.teardown(() => n.close());
  t.is(n.watchdogUsec, 200_000);
  n.startWatchdog();
  n.startWatchdog(); // idempotent: one timer
  await socket.waitFor('WATCHDOG', '1', 6);
  const pings = socket.with('WATCHDOG', '1').map((m) => m.at);
  const gaps = pings.slice(1).map((a, i) => a - pings[i]!);
  t.log(`gaps between pings (ms): ${gaps.map((g) => g.toFixed(0)).join(' ')}`);
  // Two timers would put half the gaps near 0; one timer keeps the median near 100 ms even when
  // a loaded machine fires a tick late and the next one early.
  const median = [...gaps].sort((a, b) => a - b)[Math.floor(gaps.length / 2)] ?? 0;
  t.true(median >= 75, `one timer, every ~100 ms (not two): median gap ${median.toFixed(0)} ms`);
  // Block the event loop for 3 watchdog periods: no ping can be sent meanwhile.
  const before = socket.with('WATCHDOG').length;
  const end = Date.now() + 600;
  while (Date.now() < end);
  await new Promise((r) => setImmediate(r)); // let the socket deliver what was sent
  const during = socket.with('WATCHDOG').length - before;
  t.true(during <= 1, `at most one (late) ping for a 600 ms block, got ${during}`);
  n.close();
  const closedAt = socket.with('WATCHDOG').length;
  await new Promise((r) => setTimeout(r, 300));
  t.is(socket.with('WATCHDOG').length, closedAt, 'close stops the pings');
});

test('WATCHDOG_PID names another process: no watchdog here (sd_watchdog_enabled)', (t) => {
  const n = SystemdNotifier.fromEnv({ NOTIFY_SOCKET: '/nonexistent/notify', WATCHDOG_USEC: '1000000', WATCHDOG_PID: String(process.pid + 1) }, recorder().log)!;
  t.is(n.watchdogUsec, 0);
  const mine = SystemdNotifier.fromEnv({ NOTIFY_SOCKET: '/nonexistent/notify', WATCHDOG_USEC: '1000000', WATCHDOG_PID: String(process.pid) }, recorder().log)!;
  t.is(mine.watchdogUsec, 1_000_000);
});

test('a socket that cannot be reached: one warning, then silence', (t) => {
  const r = recorder();
  const n = SystemdNotifier.fromEnv({ NOTIFY_SOCKET: '/nonexistent/notify' }, r.log)!;
  n.ready('up');
  n.status('still up');
  t.is(r.warnings.length, 1);
  t.regex(r.warnings[0]!, /cannot notify systemd/);
});
