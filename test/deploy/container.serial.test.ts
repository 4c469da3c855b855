/**
 * The project's Dockerfile, built unchanged with podman and run against the local broker
 * (--network=host: the broker listens on 127.0.0.1 and guest may only log in over loopback).
 * No container registry is reachable here: the base image (FROM node:20-bookworm-slim) is made
 * locally by scripts/deploy/node-base-image.sh and cached in /var/cache/postage-ci.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import type { Connection } from 'postage';
import { freshVhost, rabbitmqctl } from '../helpers/broker.js';
import { untilReady } from '../helpers/metrics.js';
import { inspect, podman, podmanOk, preparePodman, runContainer } from '../helpers/podman.js';
import { childrenOf } from '../helpers/proc.js';
import { controlProducer, FIXTURES, ROOT, tempDir } from '../helpers/spawn.js';
import { waitFor } from '../helpers/wait-for.js';

const IMAGE = 'localhost/postaged:test';
const DRAIN_TIMEOUT_MS = 5000;
let built = false;

interface Status {
  pid: number;
  generation: number;
  restarts: number;
  applications: Array<{ name: string; state: string; groups: string[] }>;
}

async function status(connection: Connection, key: string): Promise<Status> {
  const r = await controlProducer(connection).rpcCommand('status', {}, { _key: key, _timeout: 3, _max_retry: 0 });
  if (!r.ok) throw new Error(`status on ${key}: ${r.message}`);
  return r.value as Status;
}

test.serial('the Dockerfile builds unchanged with podman: non-root, postaged as entrypoint, a HEALTHCHECK, no dev dependencies', async (t) => {
  const base = await preparePodman(t);
  const dockerfile = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
  // --format docker: the OCI image format has no HEALTHCHECK and podman would drop it.
  const build = await podman('build', '--format', 'docker', '--layers', '-t', IMAGE, ROOT);
  t.is(build.code, 0, build.stderr.slice(-3000));
  t.log(`podman build: ${(build.ms / 1000).toFixed(1)} s`);
  t.is(fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8'), dockerfile, 'built as it is, unchanged');
  const config = JSON.parse(await inspect(IMAGE, '{{json .Config}}')) as { User: string; Entrypoint: string[]; StopSignal: string };
  const healthcheck = JSON.parse(await inspect(IMAGE, '{{json .HealthCheck}}')) as { Test?: string[] } | null;
  t.is(config.User, 'node');
  t.deepEqual(config.Entrypoint, ['/opt/postage/bin/postaged']);
  t.is(config.StopSignal, 'SIGTERM');
  t.regex(healthcheck?.Test?.join(' ') ?? '', /postaged-probe/, 'the HEALTHCHECK survived (docker format): /readyz with the listener on');
  t.regex(healthcheck?.Test?.join(' ') ?? '', /postage ping/, 'and a ping through the broker with it off');
  t.true((JSON.parse(await inspect(IMAGE, '{{json .Config.Env}}')) as string[]).includes('POSTAGED_METRICS_LISTEN=0.0.0.0:9464'), 'the listener is on by default');
  const size = Number(await inspect(IMAGE, '{{.Size}}'));
  const baseSize = Number(await inspect(base, '{{.Size}}'));
  t.log(`image ${(size / 1e6).toFixed(1)} MB = base ${(baseSize / 1e6).toFixed(1)} MB + ${((size - baseSize) / 1e6).toFixed(1)} MB of postage`);
  const modules = (await podmanOk('run', '--rm', '--entrypoint', 'sh', IMAGE, '-c', 'cd /opt/postage/node_modules && ls -d * @*/*')).stdout.split('\n');
  for (const dev of ['typescript', 'ava', 'tsx', '@types/node', '@types/convict', 'nan', 'node-addon-api']) t.false(modules.includes(dev), `${dev} is not in the image`);
  t.true(size - baseSize < 40e6, 'postage adds less than 40 MB to the base image (production dependencies only)');
  const addons = await podman('run', '--rm', '--entrypoint', 'node', IMAGE, '-e', 'const r = require("module").createRequire("/opt/postage/"); r("@jcoreio/kexec"); r("unix-dgram"); console.log("ok")');
  t.is(addons.stdout.trim(), 'ok', `the native addons load in the runtime image: ${addons.stderr}`);
  built = true;
});

test.serial('the container: PID 1 as node answers; read-only plugin and config volumes; 3 restarts in place without zombies; healthy (/readyz), unhealthy when the broker connection is gone; podman stop exits 0 within the drain timeout', async (t) => {
  if (!built) return t.fail('the image was not built (see the test above)');
  const { vhost, url, connection } = await freshVhost(t, 'postage-ctr');
  const host = `ctr-${randomUUID().slice(0, 8)}`;
  // --network=host: the image's 9464 would clash with another run; any free-looking port will do.
  const metricsPort = 20_000 + Math.floor(Math.random() * 10_000);
  const name = `postaged-ci-${host}`;
  // Volumes: the fixture plugins (an ES module, and TypeScript with a relative import, which the
  // daemon transpiles with esbuild), and a config that gives one of them a group.
  const dir = tempDir(t, 'postage-ctr-');
  const plugins = path.join(dir, 'plugins');
  fs.mkdirSync(plugins);
  for (const f of ['echo-mjs.mjs', 'echo-ts.ts', '_helper.ts']) fs.copyFileSync(path.join(FIXTURES, f), path.join(plugins, f));
  const configFile = path.join(dir, 'postaged.jsonc');
  fs.writeFileSync(
    configFile,
    `// mounted read-only at /etc/postaged/postaged.jsonc
{
  "pluginDir": "/etc/postaged/plugins",
  "log": { "level": "info", "format": "json" },
  "broker": { "heartbeat": 10, "connectAttempts": 30 },
  "drainTimeout": ${DRAIN_TIMEOUT_MS},
  "shutdownTimeout": 8000,
  "apps": { "echo-mjs": { "groups": ["mounted-config"] } }
}
`,
  );
  fs.chmodSync(dir, 0o755); // the image's user (uid 1000) reads them
  fs.chmodSync(plugins, 0o755);

  // The image's start period (60 s) would not count this young container's failures. podman 4.3
  // applies --health-start-period only with --health-cmd, so the image's own check is repeated.
  const check = JSON.parse(await inspect(IMAGE, '{{json .HealthCheck}}')) as { Test: string[]; Timeout: number; Retries: number };
  t.is(check.Test[0], 'CMD-SHELL');
  const t0 = performance.now();
  await runContainer(t, name, [
    '--network=host',
    '--health-cmd', check.Test[1]!,
    '--health-timeout', `${check.Timeout / 1e9}s`,
    '--health-retries', String(check.Retries),
    '--health-start-period', '1s',
    '-e', `POSTAGE_URL=${url}`,
    '-e', `POSTAGE_HOSTNAME=${host}`,
    '-e', `POSTAGED_METRICS_LISTEN=127.0.0.1:${metricsPort}`,
    '-v', `${plugins}:/etc/postaged/plugins:ro`,
    '-v', `${configFile}:/etc/postaged/postaged.jsonc:ro`,
    IMAGE,
  ]);
  const key = `postaged:1@${host}`;
  // Up once /readyz says so: status is answered by the daemon's own application, which starts
  // before the plugins, so a status alone could show them not yet running.
  const up = await untilReady(metricsPort, 60_000);
  t.true(up.ready, `/readyz: ${up.last}`);
  const first = await waitFor('the daemon answers status', () => status(connection, key).catch(() => undefined), 30_000, 100);
  t.log(`container up and answering: ${(performance.now() - t0).toFixed(0)} ms`);

  // PID 1, user node.
  const ping = await controlProducer(connection).rpcCommand('ping', {}, { _key: key, _timeout: 5, _max_retry: 0 });
  t.true(ping.ok);
  t.like(ping.value as object, { pid: '1', user: 'node', host });
  t.is(first.pid, 1);
  const top = (await podmanOk('top', name, 'pid', 'user', 'args')).stdout;
  t.regex(top, /^1\s+node\s+node \/opt\/postage\/bin\/postaged/m, top);

  // Volumes: read-only, and what the daemon runs.
  const mounts = JSON.parse(await inspect(name, '{{json .Mounts}}')) as Array<{ Destination: string; RW: boolean }>;
  for (const dest of ['/etc/postaged/plugins', '/etc/postaged/postaged.jsonc']) t.false(mounts.find((m) => m.Destination === dest)?.RW ?? true, `${dest} is mounted read-only`);
  const write = await podman('exec', name, 'sh', '-c', 'touch /etc/postaged/plugins/new.mjs');
  t.regex(write.stderr, /Read-only file system/);
  t.deepEqual(first.applications.map((a) => `${a.name}:${a.state}`).sort(), ['echo-mjs:running', 'echo-ts:running', 'postaged:running']);
  const grouped = await controlProducer(connection).rpcCommand('echo', { text: 'group' }, { _key: 'echo-mjs#mounted-config/rr', _timeout: 5, _max_retry: 0 });
  t.true(grouped.ok, 'the mounted config was read: echo-mjs is in its group');
  const ts = await controlProducer(connection).rpcCommand('echo', { text: 'ts' }, { _key: 'echo-ts/rr', _timeout: 5, _max_retry: 0 });
  t.true(ts.ok, 'the TypeScript plugin answers');

  // Three restarts with the image's own CLI: PID 1 re-execs in place, the container stays up.
  const hostPid = Number(await inspect(name, '{{.State.Pid}}'));
  for (let n = 1; n <= 3; n++) {
    const r0 = performance.now();
    const sent = await podman('exec', name, '/opt/postage/bin/postage', 'restart', `1@${host}`);
    t.is(sent.code, 0, sent.stderr);
    const after = await waitFor(`generation ${n + 1}`, async () => {
      const s = await status(connection, key).catch(() => undefined);
      return s && s.generation === n + 1 ? s : undefined;
    }, 60_000, 50);
    t.log(`restart ${n}: generation ${after.generation} answering ${(performance.now() - r0).toFixed(0)} ms after \`postage restart\` (CLI start included)`);
    t.is(after.pid, 1);
    t.is(Number(await inspect(name, '{{.State.Pid}}')), hostPid, 'same process, seen from the host');
    t.is(await inspect(name, '{{.State.Running}}'), 'true');
  }
  // Short-lived children come and go; what a previous image left never goes.
  const clean = await waitFor('no child of PID 1', () => childrenOf(hostPid).length === 0, 15_000).then(() => true, () => false);
  t.true(clean, `no zombie after 3 restarts; children of PID 1: ${JSON.stringify(childrenOf(hostPid))}`);

  // The HEALTHCHECK, run on demand (podman schedules it with systemd timers, which this host lacks):
  // with the listener on, it asks /readyz, which the host can ask too. Generation 4 answered
  // status from the daemon's own application, which starts before the plugins: ready once they
  // run too (a run beside a CPU hog asked at that moment: 503, "application echo-mjs is starting").
  const ready = await untilReady(metricsPort, 30_000);
  t.true(ready.ready, `/readyz: ${ready.last}`);
  t.regex(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text(), /^postaged_generation 4$/m, 'metrics from the container, after its 3 restarts');
  const healthy = await podman('healthcheck', 'run', name);
  t.is(healthy.code, 0, `healthy: ${healthy.stdout}${healthy.stderr}`);
  // The daemon stopped (SIGSTOP from the host) while the broker is fine: the check asks the daemon, not only the broker.
  process.kill(hostPid, 'SIGSTOP');
  const frozen = await podman('healthcheck', 'run', name);
  process.kill(hostPid, 'SIGCONT');
  t.is(frozen.code, 1, 'unhealthy while PID 1 cannot answer');
  t.log(`health while the daemon is stopped: ${frozen.stdout.trim()} after ${(frozen.ms / 1000).toFixed(1)} s`);
  await waitFor('healthy again after SIGCONT', async () => (await podman('healthcheck', 'run', name)).code === 0, 60_000, 500);
  // The broker connection gone: guest loses the vhost and its connections are closed; the daemon's
  // reconnection is refused until the permissions come back.
  await rabbitmqctl('clear_permissions', '-p', vhost, 'guest');
  await rabbitmqctl('close_all_connections', '-p', vhost, 'deployment test: broker connection gone');
  const fails: number[] = [];
  for (let i = 0; i < 3; i++) fails.push((await podman('healthcheck', 'run', name)).code);
  t.deepEqual(fails, [1, 1, 1], 'each check fails while the broker connection is gone');
  const health = JSON.parse(await inspect(name, '{{json .State.Health}}')) as { Status: string; FailingStreak: number; Log: Array<{ Output: string }> };
  t.log(`health without the broker: ${health.Status}, failing streak ${health.FailingStreak}: ${health.Log.at(-1)?.Output.trim()}`);
  t.is(health.Status, 'unhealthy', "unhealthy after the image's 3 retries");
  await rabbitmqctl('set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*');
  const back0 = performance.now();
  await waitFor('healthy again once the broker lets the daemon back in', async () => (await podman('healthcheck', 'run', name)).code === 0, 60_000, 250);
  t.log(`healthy again ${(performance.now() - back0).toFixed(0)} ms after the permissions came back`);
  t.is(JSON.parse(await inspect(name, '{{json .State.Health}}')).Status, 'healthy');

  // podman stop: SIGTERM to PID 1, which drains and exits 0 well before podman's SIGKILL (10 s).
  const stop = await podman('stop', '-t', '10', name);
  t.is(stop.code, 0, stop.stderr);
  t.log(`podman stop: ${stop.ms.toFixed(0)} ms`);
  t.is(await inspect(name, '{{.State.ExitCode}}'), '0');
  t.true(stop.ms < DRAIN_TIMEOUT_MS, `stopped within the drain timeout (${DRAIN_TIMEOUT_MS} ms)`);
  const logs = (await podman('logs', name)).stdout;
  t.regex(logs, /"message":"stopped"/);
});
