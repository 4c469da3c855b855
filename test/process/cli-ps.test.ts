/**
 * `postage ps` and fan-out against several real `postaged` daemons that claim different
 * host names (POSTAGE_HOSTNAME) on one vhost, as daemons on several machines would.
 */
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import test from 'ava';
import { brokerReachable, brokerTest, createVhostNamed, deleteVhostNamed, urlFor } from '../helpers/broker.js';
import { BIN as POSTAGED, DaemonProcess, ROOT } from '../helpers/spawn.js';
import { sleep, waitFor } from '../helpers/wait-for.js';

const POSTAGE = `${ROOT}/bin/postage`;
const enabled = brokerReachable || process.env['CI'] === 'true';
const PLUGINS = ['advanced-echo', 'basic-echo', 'postaged', 'rpc-echo'];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

interface Daemon {
  host: string;
  process: DaemonProcess;
}

const vhost = `cli-ps-${randomUUID().slice(0, 8)}`;
const url = urlFor(vhost);
const tag = randomUUID().slice(0, 6);
const daemons: Daemon[] = [];

function postage(args: readonly string[]): Promise<Run> {
  const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('POSTAGE_'))), POSTAGE_URL: url };
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(POSTAGE, [...args], { env, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** Starts a daemon claiming host name `host`, with the environment test/helpers/spawn.ts gives. */
async function startDaemon(host: string): Promise<Daemon> {
  const env: NodeJS.ProcessEnv = { ...process.env, POSTAGE_URL: url, POSTAGE_HOSTNAME: host, POSTAGED_LOG_FORMAT: 'json' };
  delete env['POSTAGED_STATE'];
  delete env['POSTAGED_CONFIG'];
  const d = { host, process: new DaemonProcess(spawn(POSTAGED, ['--plugins', 'plugins', '--no-watch'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })) };
  daemons.push(d);
  await d.process.waitForLine('postaged ready', { timeout: 30_000 });
  return d;
}

// The daemons serve the whole file (its tests run in order), so they are started in a hook;
// spawn.ts's startDaemon() ties a daemon to one test's teardown instead.
test.before(async () => {
  if (!enabled) return;
  await createVhostNamed(vhost);
  await Promise.all([startDaemon(`host-a-${tag}`), startDaemon(`host-b-${tag}`)]);
});

test.after.always(async () => {
  if (!enabled) return;
  await Promise.all(daemons.map((d) => d.process.stop()));
  await deleteVhostNamed(vhost);
});

/** The ps table as {host, pid, daemon, apps: [name, state]} per daemon. */
function parsePs(stdout: string): Array<{ host: string; pid: number; apps: string[] }> {
  const [header, ...rows] = stdout.trimEnd().split('\n');
  const appAt = header!.indexOf('APPLICATION');
  const out: Array<{ host: string; pid: number; apps: string[] }> = [];
  for (const row of rows) {
    const app = row.slice(appAt).split(/\s+/).slice(0, 2).join(' ');
    if (!row.startsWith(' ')) {
      const [host, pid] = row.split(/\s+/);
      out.push({ host: host!, pid: Number(pid), apps: [] });
    }
    out.at(-1)?.apps.push(app);
  }
  return out;
}

brokerTest.serial('ps lists both daemons (two hosts) with their applications, states and counts', async (t) => {
  const r = await postage(['ps']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^HOST\s+PID\s+DAEMON\s+UPTIME\s+RESTARTS\s+CPU\s+RSS\s+APPLICATION\s+STATE\s+RECEIVED\s+HANDLED\s+FAILED\s+GROUPS\n/);
  const rows = parsePs(r.stdout);
  t.deepEqual(
    rows.map((d) => d.host),
    [`host-a-${tag}`, `host-b-${tag}`],
  );
  for (const [i, d] of rows.entries()) {
    t.is(d.pid, daemons.find((x) => x.host === d.host)!.process.pid, `pid of ${d.host}`);
    t.deepEqual(d.apps, ['postaged running', 'advanced-echo running', 'basic-echo running', 'rpc-echo running'], `apps of daemon ${i}`);
  }
  t.regex(r.stdout, new RegExp(`\\nhost-a-${tag}\\s+\\d+\\s+postaged\\s+\\d+s\\s+0\\s+\\d+\\.\\d%\\s+\\d+\\.\\d MiB\\s+postaged\\s+running\\s+\\d+\\s+\\d+\\s+0`));
});

brokerTest.serial('ps --json: one status per daemon; --expect 2 returns without waiting the timeout', async (t) => {
  const r = await postage(['ps', '--json', '--expect', '2', '--timeout', '45']);
  t.is(r.code, 0, r.stderr);
  t.true(r.ms < 30_000, `${r.ms} ms`);
  const list = JSON.parse(r.stdout) as Array<{ host: string; pid: number; restarts: number; applications: Array<{ name: string; state: string; counts: Record<string, number> }> }>;
  t.deepEqual(
    list.map((d) => d.host),
    [`host-a-${tag}`, `host-b-${tag}`],
  );
  for (const d of list) {
    t.deepEqual(d.applications.map((a) => a.name).sort(), PLUGINS);
    t.true(d.applications.every((a) => a.state === 'running' && typeof a.counts['received'] === 'number'));
  }
});

brokerTest.serial('ping on a fan-out key with three applications prints three replies', async (t) => {
  await startDaemon(`host-c-${tag}`);
  const r = await postage(['ping', 'rpc-echo']);
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  t.is(lines.length, 1 + 3, r.stdout);
  t.deepEqual(
    lines.slice(1).map((l) => l.split(/\s+/)[2]),
    [`host-a-${tag}`, `host-b-${tag}`, `host-c-${tag}`],
  );
  for (const l of lines.slice(1)) t.regex(l, /^rpc-echo\s+\d+\s/);
  const rr = await postage(['ping', `rpc-echo@host-b-${tag}/rr`]);
  t.is(rr.stdout.trimEnd().split('\n').length, 2, 'N@H/rr: one reply, from that host');
  t.regex(rr.stdout, new RegExp(`host-b-${tag}`));
});

brokerTest.serial('ps --watch --count 2 prints two frames and exits 0', async (t) => {
  const r = await postage(['ps', '--watch', '--count', '2', '--interval', '0.2', '--expect', '3']);
  t.is(r.code, 0, r.stderr);
  const frames = r.stdout.split(/^postage ps, every 0\.2 s, /m).slice(1);
  t.is(frames.length, 2, r.stdout);
  for (const f of frames) t.is(parsePs(f.slice(f.indexOf('\n\n') + 2)).length, 3);
  t.false(r.stdout.includes('\x1b['), 'no escape codes when stdout is not a terminal');
});

brokerTest.serial('ps --watch stops on SIGINT with exit 0', async (t) => {
  const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('POSTAGE_'))), POSTAGE_URL: url };
  const child = spawn(POSTAGE, ['ps', '--watch', '--interval', '0.2', '--json', '--expect', '3'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await waitFor('two frames', () => out.split('\n').filter(Boolean).length >= 2, 20_000);
  child.kill('SIGINT');
  t.is(await Promise.race([exited, sleep(10_000).then(() => 'still running')]), 0);
  const frames = out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as unknown[]);
  t.true(frames.every((f) => f.length === 3), 'one JSON line per refresh, three daemons each');
});

brokerTest.serial('ps with no daemon on the vhost exits 3', async (t) => {
  const empty = `cli-ps-empty-${randomUUID().slice(0, 8)}`;
  await createVhostNamed(empty);
  t.teardown(() => deleteVhostNamed(empty));
  const r = await postage(['ps', '--vhost', empty, '--timeout', '1']);
  t.is(r.code, 3);
  t.is(r.stdout, '');
  t.is(r.stderr, 'postage: no daemon answered within 1 s\n');
});
