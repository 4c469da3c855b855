/**
 * Every `postage` command against a real `./bin/postaged` running the example plugins
 * (plugins/): output and exit code of ping, status, rpc, send, join, leave, restart, quit.
 * One daemon on its own vhost and host name; the tests run in order against it.
 */
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import test from 'ava';
import { brokerReachable, brokerTest, createVhostNamed, deleteVhostNamed, urlFor } from '../helpers/broker.js';
import { BIN as POSTAGED, DaemonProcess, ROOT } from '../helpers/spawn.js';
import { waitFor } from '../helpers/wait-for.js';

const POSTAGE = `${ROOT}/bin/postage`;
const enabled = brokerReachable || process.env['CI'] === 'true';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

const vhost = `cli-commands-${randomUUID().slice(0, 8)}`;
const host = `cli-host-${randomUUID().slice(0, 6)}`;
const url = urlFor(vhost);
let daemon: DaemonProcess;
let pid = 0;

function postage(args: readonly string[], input?: string): Promise<Run> {
  const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('POSTAGE_'))), POSTAGE_URL: url };
  const started = Date.now();
  return new Promise((resolve) => {
    const child = execFile(POSTAGE, [...args], { env, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr, ms: Date.now() - started });
    });
    child.stdin?.end(input ?? '');
  });
}

/** The daemon's status through `postage status --json`. */
async function status(): Promise<{ pid: number; restarts: number; host: string; applications: Array<{ name: string; state: string; counts: { received: number } }> }> {
  const r = await postage(['status', `postaged:${pid}@${host}`, '--json']);
  if (r.code !== 0) throw new Error(`status exit ${r.code}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as Array<{ value: never }>)[0]!.value;
}

/** The environment test/helpers/spawn.ts gives a daemon, with a host name of its own. */
function daemonEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, POSTAGE_URL: url, POSTAGE_HOSTNAME: host, POSTAGED_LOG_FORMAT: 'json' };
  delete env['POSTAGED_STATE'];
  delete env['POSTAGED_CONFIG'];
  return env;
}

// One daemon for the whole file (its tests run in order), so it is started in a hook;
// spawn.ts's startDaemon() ties the daemon to one test's teardown instead.
test.before(async () => {
  if (!enabled) return;
  await createVhostNamed(vhost);
  daemon = new DaemonProcess(spawn(POSTAGED, ['--plugins', 'plugins', '--no-watch'], { cwd: ROOT, env: daemonEnv(), stdio: ['ignore', 'pipe', 'pipe'] }));
  await daemon.waitForLine('postaged ready', { timeout: 30_000 });
  pid = daemon.pid;
});

test.after.always(async () => {
  if (!enabled) return;
  await daemon?.stop();
  await deleteVhostNamed(vhost);
});

brokerTest.serial('ping without a key: the daemon answers with its fingerprint', async (t) => {
  const r = await postage(['ping']);
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  t.regex(lines[0] ?? '', /^NAME\s+PID\s+HOST\s+TYPE\s+USER\s+VHOST$/);
  t.is(lines.length, 2, r.stdout);
  t.regex(lines[1] ?? '', new RegExp(`^postaged\\s+${pid}\\s+${host}\\s+application\\s`));
  const json = await postage(['ping', '--json']);
  const replies = JSON.parse(json.stdout) as Array<{ ok: boolean; value: Record<string, string> }>;
  t.like(replies, [{ ok: true, value: { name: 'postaged', pid: String(pid), host } }]);
});

brokerTest.serial('ping @H (fan-out) prints one reply per application on the host', async (t) => {
  const r = await postage(['ping', `@${host}`]);
  t.is(r.code, 0, r.stderr);
  const names = r.stdout.trimEnd().split('\n').slice(1).map((l) => l.split(/\s+/)[0]);
  t.deepEqual(names, ['advanced-echo', 'basic-echo', 'postaged', 'rpc-echo']);
});

brokerTest.serial('--expect and single-consumer keys return at once instead of waiting the timeout', async (t) => {
  const fan = await postage(['ping', `${pid}@${host}`, '--timeout', '45', '--expect', '4']);
  t.is(fan.code, 0, fan.stderr);
  t.is(fan.stdout.trimEnd().split('\n').length, 5);
  t.true(fan.ms < 30_000, `${fan.ms} ms`);
  const rr = await postage(['ping', 'rpc-echo/rr', '--timeout', '45']);
  t.is(rr.code, 0, rr.stderr);
  t.true(rr.ms < 30_000, `${rr.ms} ms`);
  const short = await postage(['ping', 'rpc-echo', '--timeout', '1', '--expect', '2']);
  t.is(short.code, 3, 'fewer replies than --expect within the timeout');
  t.regex(short.stderr, /only 1 of 2 expected replies/);
});

brokerTest.serial('status of the daemon: process, applications, counts, queues', async (t) => {
  const r = await postage(['status', `postaged:${pid}@${host}`]);
  t.is(r.code, 0, r.stderr);
  t.true(r.stdout.startsWith(`postaged:${pid}@${host}  postaged `), r.stdout);
  t.regex(r.stdout, /generation 1, restarts 0/);
  for (const app of ['postaged', 'advanced-echo', 'basic-echo', 'rpc-echo']) t.regex(r.stdout, new RegExp(`\\n  ${app}\\s+running\\s+\\d+`), app);
  t.regex(r.stdout, new RegExp(`rpc-echo: rpc-echo, rpc-echo@${host}, rpc-echo:${pid}@${host}`));
  const s = await status();
  t.is(s.pid, pid);
  t.is(s.host, host);
  t.deepEqual(s.applications.map((a) => a.name).sort(), ['advanced-echo', 'basic-echo', 'postaged', 'rpc-echo']);
});

brokerTest.serial('status to an application without a status handler: not a postaged daemon, exit 1', async (t) => {
  const r = await postage(['status', 'basic-echo/rr']);
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`basic-echo:${pid}@${host}: no status command: not a postaged daemon`));
});

brokerTest.serial('rpc: the value for one reply, JSON with --json, parameters from stdin', async (t) => {
  const r = await postage(['rpc', 'rpc-echo/rr', 'echo', '{"text": "hi", "n": [1, 2]}']);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(JSON.parse(r.stdout), { text: 'hi', n: [1, 2] });
  const s = await postage(['rpc', 'rpc-echo/rr', 'echo', '"plain string"']);
  t.is(s.stdout, 'plain string\n');
  const j = await postage(['rpc', `rpc-echo:${pid}@${host}`, 'echo', '-', '--json'], '{"from": "stdin"}');
  t.is(j.code, 0, j.stderr);
  t.like(JSON.parse(j.stdout), [{ ok: true, type: 'success', value: { from: 'stdin' }, from: { name: 'rpc-echo', pid: String(pid), host } }]);
  const fan = await postage(['rpc', 'rpc-echo', 'echo', '42', '--timeout', '1']);
  t.is(fan.code, 0);
  t.is(fan.stdout, `rpc-echo:${pid}@${host}: 42\n`);
});

brokerTest.serial('rpc to a handler that does not exist: exit 1 with the error', async (t) => {
  const r = await postage(['rpc', 'basic-echo/rr', 'echo', '"x"']);
  t.is(r.code, 1);
  t.is(r.stdout, '');
  t.regex(r.stderr, /error: unknown RPC command 'echo'/);
});

brokerTest.serial('send: the application receives the command', async (t) => {
  const marker = `hello-${randomUUID().slice(0, 8)}`;
  const r = await postage(['send', 'basic-echo', 'echo', JSON.stringify(marker)]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'sent echo to basic-echo\n');
  await daemon.waitForLine((l) => l.app === 'basic-echo' && JSON.stringify(l).includes(marker));
  const j = await postage(['send', 'advanced-echo/rr', 'echo', '{"a": 1}', '--json']);
  t.deepEqual(JSON.parse(j.stdout), { key: 'advanced-echo/rr', command: 'echo', parameters: { a: 1 }, routed: true });
  t.pass();
});

brokerTest.serial('join and leave a group: N#G reaches the application only while it is a member', async (t) => {
  const join = await postage(['join', 'rpc-echo', 'blue']);
  t.is(join.code, 0, join.stderr);
  t.is(join.stdout, 'sent join_group to rpc-echo\n');
  await waitFor('rpc-echo#blue answers', async () => (await postage(['ping', 'rpc-echo#blue', '--expect', '1', '--timeout', '2'])).code === 0);
  const member = await postage(['ping', 'rpc-echo#blue', '--timeout', '1']);
  t.regex(member.stdout, new RegExp(`\\nrpc-echo\\s+${pid}\\s+${host}`));
  const leave = await postage(['leave', 'rpc-echo', 'blue']);
  t.is(leave.code, 0, leave.stderr);
  await waitFor('rpc-echo#blue is silent', async () => (await postage(['ping', 'rpc-echo#blue', '--timeout', '1'])).code === 3);
  const gone = await postage(['send', 'rpc-echo#blue', 'echo']);
  t.is(gone.code, 3, 'no queue is bound to the group key any more');
});

brokerTest.serial('restart P@H: the daemon re-execs in place, same PID, restarts 1', async (t) => {
  const r = await postage(['restart', `${pid}@${host}`]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, `sent restart to ${pid}@${host}\n`);
  const s = await waitFor('restarts = 1', async () => {
    const st = await status();
    return st.restarts === 1 && st.applications.every((a) => a.state === 'running') ? st : undefined;
  }, 30_000);
  t.is(s.pid, pid);
  t.is(daemon.exit, undefined, 'the process never exited');
  const ps = await postage(['ps', '--expect', '1']);
  t.regex(ps.stdout, new RegExp(`\\n${host}\\s+${pid}\\s+postaged\\s+\\S+\\s+1\\s`));
});

brokerTest.serial('quit an application: it stops, the others keep running', async (t) => {
  const r = await postage(['quit', `basic-echo:${pid}@${host}`]);
  t.is(r.code, 0, r.stderr);
  await waitFor('basic-echo stopped', async () => (await status()).applications.find((a) => a.name === 'basic-echo')?.state !== 'running', 20_000);
  const ping = await postage(['ping', `@${host}`]);
  const names = ping.stdout.trimEnd().split('\n').slice(1).map((l) => l.split(/\s+/)[0]);
  t.deepEqual(names, ['advanced-echo', 'postaged', 'rpc-echo']);
});

brokerTest.serial('quit the daemon: it stops everything and exits 0', async (t) => {
  const r = await postage(['quit', `postaged:${pid}@${host}`]);
  t.is(r.code, 0, r.stderr);
  const exit = await Promise.race([daemon.exited, new Promise((r) => setTimeout(r, 30_000, 'still running'))]);
  t.deepEqual(exit, { code: 0, signal: null }, daemon.tail());
  const ping = await postage(['ping', '--timeout', '1']);
  t.is(ping.code, 3);
});
