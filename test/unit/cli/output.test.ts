/** Formatting of tables, durations, sizes, and the ps / status views of a daemon's status. */
import test from 'ava';
import { asDaemonStatus, psTable, statusBlock } from '../../../cli/daemon-status.js';
import { bytes, duration, safe, showValue, table } from '../../../cli/output.js';

test('durations and sizes', (t) => {
  t.is(duration(42.7), '42s');
  t.is(duration(312), '5m12s');
  t.is(duration(3 * 3600 + 60), '3h1m');
  t.is(duration(93784), '1d2h');
  t.is(duration(Number.NaN), '-');
  t.is(bytes(512), '512 B');
  t.is(bytes(64 * 1024 * 1024), '64.0 MiB');
});

test('tables align columns, numbers to the right', (t) => {
  t.is(
    table([{ header: 'NAME' }, { header: 'N', align: 'right' }], [
      ['a', '1'],
      ['long-name', '100'],
    ]),
    'NAME         N\na            1\nlong-name  100\n',
  );
});

const status = {
  name: 'postaged',
  pid: 4242,
  host: 'web-1',
  version: '0.1.0',
  uptime: 312,
  generation: 2,
  restarts: 1,
  lastRestartReason: 'restart command',
  startedAt: '2025-01-01T00:00:00.000Z',
  cpu: 1.25,
  memory: 64 * 1024 * 1024,
  pluginDir: '/srv/plugins',
  applications: [
    { name: 'rpc-echo', file: '/srv/plugins/rpc-echo.js', state: 'running', groups: ['blue'], queues: ['rpc-echo'], counts: { received: 5, handled: 4, failed: 1, rejected: 0, deadLettered: 0, unhandled: 0 } },
    { name: 'postaged', file: null, state: 'running', groups: [], queues: ['postaged'], counts: { received: 2, handled: 2, failed: 0, rejected: 0, deadLettered: 0, unhandled: 0 } },
    { name: 'broken', file: '/srv/plugins/broken.js', state: 'failed', groups: [], queues: [], counts: {}, error: 'SyntaxError: nope' },
  ],
};

test('ps: one row per application, the daemon first, its columns on its first row only, errors after the table', (t) => {
  const d = asDaemonStatus(status);
  t.truthy(d);
  const lines = psTable([d!]).trimEnd().split('\n');
  t.regex(lines[0] ?? '', /^HOST\s+PID\s+DAEMON\s+UPTIME\s+RESTARTS\s+CPU\s+RSS\s+APPLICATION\s+STATE\s+RECEIVED\s+HANDLED\s+FAILED\s+GROUPS$/);
  t.regex(lines[1] ?? '', /^web-1\s+4242\s+postaged\s+5m12s\s+1\s+1\.3%\s+64\.0 MiB\s+postaged\s+running\s+2\s+2\s+0$/);
  t.regex(lines[2] ?? '', /^\s+broken\s+failed\s+-\s+-\s+-$/);
  t.regex(lines[3] ?? '', /^\s+rpc-echo\s+running\s+5\s+4\s+1\s+blue$/);
  t.is(lines[4], 'broken in postaged:4242@web-1 failed: SyntaxError: nope');
});

test('status: process lines, every count, queues and errors', (t) => {
  const text = statusBlock(asDaemonStatus(status)!);
  t.true(text.startsWith('postaged:4242@web-1  postaged 0.1.0\n'));
  t.regex(text, /generation 2, restarts 1 \(last: restart command\)/);
  t.regex(text, /rpc-echo\s+running\s+5\s+4\s+1\s+0\s+0\s+0\s+blue\s+\/srv\/plugins\/rpc-echo\.js/);
  t.regex(text, /broken failed: SyntaxError: nope/);
});

test('a value without an applications list is not a daemon status', (t) => {
  t.is(asDaemonStatus({ name: 'x' }), undefined);
  t.is(asDaemonStatus('text'), undefined);
});

test('text from remote replies cannot drive the terminal: control characters are shown escaped', (t) => {
  t.is(safe('ok\u001b[2J\u001b]0;owned\u0007 \r\u009b1m'), 'ok\\u001b[2J\\u001b]0;owned\\u0007 \\u000d\\u009b1m');
  t.is(safe('two\nlines\tand a tab'), 'two\nlines\tand a tab');
  t.is(showValue('\u001b[31mred'), '\\u001b[31mred');
  t.is(table([{ header: 'NAME' }], [['evil\u001b[2J\nname']]), 'NAME\nevil\\u001b[2J name\n');
});
