/**
 * systemd/postaged.service under a real systemd (252, PID 1 of a podman container started with
 * --systemd=always and SYS_ADMIN, without which systemd silently skips the unit's mount
 * sandboxing), with the package installed from its `npm pack` tarball by `npm install -g` and
 * the unit installed by running the install steps of its own header. Against the local broker
 * (--network=host).
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { freshVhost, listQueues } from '../helpers/broker.js';
import { packTarball } from '../helpers/package.js';
import { podman, podmanOk, preparePodman, runContainer } from '../helpers/podman.js';
import { FIXTURES, ROOT, tempDir } from '../helpers/spawn.js';
import { sleep, waitFor } from '../helpers/wait-for.js';

const IMAGE = 'localhost/postaged-systemd:test';
const UNIT = path.join(ROOT, 'systemd', 'postaged.service');

/** The unit header's install steps: the indented command lines after "# Install". */
function headerSteps(unit: string): string[] {
  const lines = unit.split('\n');
  const start = lines.findIndex((l) => l.startsWith('# Install'));
  const steps: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (line === '#') break;
    const m = /^# {3}(\S.*)$/.exec(line);
    if (m) steps.push(m[1]!.trim());
  }
  return steps;
}

/** A container whose PID 1 is systemd, driven with `podman exec`. */
class SystemdContainer {
  constructor(readonly name: string) {}

  async sh(script: string): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
    return podman('exec', this.name, 'sh', '-c', script);
  }

  async shOk(script: string): Promise<string> {
    const r = await this.sh(script);
    if (r.code !== 0) throw new Error(`in the container: ${script}\nexit ${r.code}\n${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  /** `systemctl show postaged -p …` as an object. */
  async show(...props: string[]): Promise<Record<string, string>> {
    const out = await this.shOk(`systemctl show postaged ${props.map((p) => `-p ${p}`).join(' ')}`);
    const o: Record<string, string> = {};
    for (const line of out.split('\n')) {
      const eq = line.indexOf('=');
      if (eq > 0) o[line.slice(0, eq)] = line.slice(eq + 1);
    }
    return o;
  }

  async journal(): Promise<string> {
    return (await this.sh('journalctl -u postaged -o cat --no-pager')).stdout;
  }

  /** The postage CLI inside the container, against the test's vhost. */
  async postage(env: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return podman('exec', this.name, 'sh', '-c', `env ${env} postage ${args.map((a) => `'${a}'`).join(' ')}`);
  }

  async status(env: string, host: string): Promise<{ pid: number; generation: number } | undefined> {
    const r = await this.postage(env, 'status', `postaged@${host}`, '--json', '--timeout', '2');
    if (r.code !== 0) return undefined;
    const replies = JSON.parse(r.stdout) as Array<{ value: { pid: number; generation: number } }>;
    return replies[0]?.value;
  }
}

/**
 * The unit once `generation` is ready: active again (READY=1 after RELOADING=1) with the
 * generation's STATUS=; a minute at most.
 */
function readyAs(c: SystemdContainer, generation: number): Promise<Record<string, string>> {
  return waitFor(
    `generation ${generation} ready (ActiveState active, StatusText "generation ${generation}: …")`,
    async () => {
      const s = await c.show('ActiveState', 'MainPID', 'NRestarts', 'StatusText', 'WatchdogTimestampMonotonic');
      return s['ActiveState'] === 'active' && (s['StatusText'] ?? '').startsWith(`generation ${generation}: `) ? s : undefined;
    },
    60_000,
    100,
  );
}

let image = false;

test.serial('the systemd test image: npm pack tarball installed with npm install -g', async (t) => {
  await preparePodman(t);
  const ctx = tempDir(t, 'postage-sysd-ctx-');
  const tarball = await packTarball(t, ctx);
  fs.renameSync(tarball, path.join(ctx, 'postage.tgz'));
  fs.copyFileSync(path.join(ROOT, 'test', 'deploy', 'Containerfile.systemd'), path.join(ctx, 'Containerfile'));
  const build = await podman('build', '--layers', '-t', IMAGE, ctx);
  t.is(build.code, 0, build.stderr.slice(-3000));
  t.log(`podman build (systemd, npm install -g): ${(build.ms / 1000).toFixed(1)} s`);
  image = build.code === 0;
});

test.serial('the unit under systemd: Type=notify start, restart and reload in place (same MainPID, reloading seen), hardening, watchdog, stop, config error', async (t) => {
  if (!image) return t.fail('the image was not built (see the test above)');
  const { vhost } = await freshVhost(t, 'postage-sysd');
  const host = `sysd-${randomUUID().slice(0, 8)}`;
  const name = `postaged-sysd-${host}`;
  const env = `POSTAGE_HOST=127.0.0.1 POSTAGE_VHOST=${vhost}`;
  await runContainer(t, name, ['--systemd=always', '--cap-add', 'SYS_ADMIN', '--network=host', '--hostname', host, IMAGE]);
  const c = new SystemdContainer(name);
  const boot = await waitFor('systemd up', async () => /^(running|degraded)$/.test((await c.sh('systemctl is-system-running')).stdout.trim()), 60_000, 250);
  t.truthy(boot);
  t.is((await c.shOk('cat /proc/1/comm')).trim(), 'systemd');

  // The unit's header, step by step; the broker settings go into /etc/postaged/env before the start.
  const steps = headerSteps(fs.readFileSync(UNIT, 'utf8'));
  t.is(steps.at(-1), 'systemctl enable --now postaged');
  t.log(`header steps: ${steps.length}`);
  // One line each (they carry trailing comments), stopping at the first failure.
  await c.shOk(['set -e', ...steps.slice(0, -1)].join('\n'));
  t.true((await c.sh('test -f /etc/systemd/system/postaged.service && test -f /etc/postaged/postaged.jsonc && id postaged')).code === 0, 'the header installed the unit, the config and the user');
  await c.shOk(`cp "$(npm root -g)/postage/plugins/"* /etc/postaged/plugins/`);
  await podmanOk('cp', path.join(FIXTURES, 'blocker.mjs'), `${name}:/etc/postaged/plugins/blocker.mjs`);
  await c.shOk('chown root:root /etc/postaged/plugins/* && chmod 0644 /etc/postaged/plugins/*');
  await c.shOk(`printf '%s\\n' POSTAGE_HOST=127.0.0.1 POSTAGE_VHOST=${vhost} POSTAGE_USER=guest POSTAGE_PASSWORD=guest POSTAGE_HOSTNAME=${host} > /etc/postaged/env`);
  // Type=notify: systemctl start returns once postaged said READY=1, i.e. once every plugin consumes.
  const start = await c.sh(steps.at(-1)!);
  t.is(start.code, 0, `${start.stderr}\n${await c.journal()}`);
  t.log(`systemctl enable --now (returns at READY=1): ${start.ms.toFixed(0)} ms`);
  const s0 = await c.show('ActiveState', 'SubState', 'Type', 'NotifyAccess', 'StatusText', 'MainPID', 'WatchdogUSec', 'WatchdogTimestampMonotonic', 'NRestarts');
  t.log(JSON.stringify(s0));
  t.like(s0, { ActiveState: 'active', SubState: 'running', Type: 'notify', NotifyAccess: 'main', WatchdogUSec: '30s', NRestarts: '0' });
  t.regex(s0['StatusText'] ?? '', /^generation 1: postaged running, .*rpc-echo running/, 'STATUS= from postaged');
  t.not(s0['WatchdogTimestampMonotonic'], '0', 'systemd received WATCHDOG=1');
  // Ready meant consuming: the first RPC is answered at once.
  const echo = await c.postage(env, 'rpc', 'rpc-echo/rr', 'echo', '"ready"', '--timeout', '3');
  t.is(echo.code, 0, echo.stderr);
  const main0 = s0['MainPID']!;

  // Hardening on the running process.
  const mountinfo = await c.shOk(`cat /proc/${main0}/mountinfo`);
  const status = await c.shOk(`cat /proc/${main0}/status`);
  t.truthy(mountinfo.split('\n').find((l) => l.split(' ')[4] === '/' && /^ro\b/.test(l.split(' ')[5] ?? '')), 'ProtectSystem=strict: / is read-only');
  t.regex(mountinfo, /systemd-private-\S*postaged\.service\S* \/tmp /, 'PrivateTmp');
  t.regex(mountinfo, / \/proc .*hidepid=invisible/, 'ProtectProc=invisible');
  t.regex(status, /^NoNewPrivs:\s+1$/m);
  t.regex(status, /^Seccomp:\s+2$/m, 'SystemCallFilter');
  t.regex(status, /^CapBnd:\s+0000000000000000$/m, 'no capabilities');
  t.is((await c.shOk(`stat -c %U /proc/${main0}`)).trim(), 'postaged', 'runs as user postaged');

  // Watch ActiveState in the background while restarting (self-terminating loop, 30 s at most).
  await podmanOk('exec', '-d', name, 'sh', '-c', 'end=$(($(date +%s) + 30)); while [ $(date +%s) -lt $end ]; do systemctl show -p ActiveState --value postaged; done > /run/states.log 2>&1');
  const wd0 = Number(s0['WatchdogTimestampMonotonic']);
  const r0 = performance.now();
  const sent = await c.postage(env, 'restart', `postaged@${host}`);
  t.is(sent.code, 0, sent.stderr);
  const g2 = await waitFor('generation 2', async () => (await c.status(env, host))?.generation === 2, 30_000, 100);
  t.truthy(g2);
  t.log(`postage restart → generation 2 answering: ${(performance.now() - r0).toFixed(0)} ms`);
  // Status is answered by the daemon's own application, which starts before the plugins; the
  // generation is ready (READY=1, STATUS=) once they run too.
  const s1 = await readyAs(c, 2);
  t.like(s1, { MainPID: main0, NRestarts: '0' }, 'MainPID unchanged, nothing restarted by systemd');
  t.true(Number(s1['WatchdogTimestampMonotonic']) > wd0, 'the new generation pinged the watchdog');

  const r1 = performance.now();
  const reload = await c.sh('systemctl reload postaged');
  t.is(reload.code, 0, reload.stderr);
  const g3 = await waitFor('generation 3', async () => (await c.status(env, host))?.generation === 3, 30_000, 100);
  t.truthy(g3);
  t.log(`systemctl reload → generation 3 answering: ${(performance.now() - r1).toFixed(0)} ms`);
  const s2 = await readyAs(c, 3);
  t.like(s2, { MainPID: main0, NRestarts: '0' }, 'MainPID unchanged after reload');
  const states = (await c.shOk('cat /run/states.log')).split('\n').filter(Boolean);
  const runs = states.filter((s, i) => s !== states[i - 1]);
  t.log(`ActiveState seen: ${runs.join(' → ')} (${states.length} samples)`);
  t.true(runs.filter((s) => s === 'reloading').length >= 2, 'systemd showed `reloading` during each re-exec (RELOADING=1 … READY=1)');
  t.true(runs.every((s) => s === 'active' || s === 'reloading'), 'never anything but active and reloading');
  const journal = await c.journal();
  t.regex(journal, /Reloading postaged|Reloaded postaged/, 'systemctl reload in the journal');

  // The watchdog: with WatchdogSec=3 (a drop-in), a plugin that blocks the event loop for 10 s is killed and restarted.
  await c.shOk("mkdir -p /etc/systemd/system/postaged.service.d && printf '[Service]\\nWatchdogSec=3\\n' > /etc/systemd/system/postaged.service.d/watchdog-test.conf && systemctl daemon-reload && systemctl restart postaged");
  const w0 = await c.show('MainPID', 'WatchdogUSec', 'NRestarts', 'ActiveState');
  t.like(w0, { WatchdogUSec: '3s', NRestarts: '0', ActiveState: 'active' });
  t.not(w0['MainPID'], main0, 'systemctl restart is a new process');
  // Longer than 3 s without a block: the pings keep it alive.
  const alive0 = performance.now();
  await sleep(4000);
  t.like(await c.show('MainPID', 'NRestarts'), { MainPID: w0['MainPID'], NRestarts: '0' }, 'an idle daemon pings in time');
  t.log(`idle for ${(performance.now() - alive0).toFixed(0)} ms with WatchdogSec=3: not restarted`);
  const b0 = performance.now();
  // Only in this process: the unacked message comes back to the next one, which must not block too.
  t.is((await c.postage(env, 'send', 'blocker/rr', 'block', JSON.stringify({ ms: 10_000, pid: Number(w0['MainPID']) }))).code, 0);
  const restarted = await waitFor('a restart by the watchdog', async () => {
    const s = await c.show('MainPID', 'NRestarts', 'ActiveState');
    return s['NRestarts'] === '1' && s['ActiveState'] === 'active' && s['MainPID'] !== w0['MainPID'] ? s : undefined;
  }, 60_000, 250);
  t.log(`blocked loop → restarted by systemd (new MainPID ${restarted['MainPID']}): ${(performance.now() - b0).toFixed(0)} ms`);
  const wj = await c.journal();
  t.regex(wj, /[Ww]atchdog timeout \(limit 3s\)/);
  t.regex(wj, /Failed with result 'watchdog'/);
  const pinged = await waitFor('ping after the watchdog restart', async () => (await c.postage(env, 'ping', `postaged@${host}`, '--expect', '1', '--timeout', '2')).code === 0, 30_000, 250);
  t.truthy(pinged);
  await c.shOk('rm /etc/systemd/system/postaged.service.d/watchdog-test.conf && systemctl daemon-reload');

  // systemctl stop: SIGTERM, drain, exit 0.
  const stop = await c.sh('systemctl stop postaged');
  t.is(stop.code, 0);
  t.log(`systemctl stop: ${stop.ms.toFixed(0)} ms`);
  t.like(await c.show('ActiveState', 'Result', 'ExecMainStatus', 'ExecMainCode'), { ActiveState: 'inactive', Result: 'success', ExecMainStatus: '0' });

  // A configuration error: exit 78, and RestartPreventExitStatus=78 keeps systemd from looping.
  await c.shOk('echo POSTAGED_TOPOLOGY=bogus >> /etc/postaged/env && systemctl reset-failed postaged');
  const bad = await c.sh('systemctl start postaged');
  t.not(bad.code, 0, 'systemctl start reports the failure (the daemon never said READY=1)');
  const failed = await c.show('ActiveState', 'Result', 'ExecMainStatus', 'NRestarts', 'ExecMainExitTimestampMonotonic');
  t.like(failed, { ActiveState: 'failed', Result: 'exit-code', ExecMainStatus: '78', NRestarts: '0' });
  // RestartSec=2: a restart loop would have restarted it twice within 5 s.
  await sleep(5000);
  t.like(await c.show('ActiveState', 'NRestarts'), { ActiveState: 'failed', NRestarts: '0' }, 'no restart after exit 78');
  t.regex(await c.journal(), /configuration error \(exit 78\).*topology\.mode/);

  t.true((await listQueues(vhost)).some((q) => q.name === 'rpc-echo'), 'the daemon declared its queues on the test vhost');
  const halt = await podman('stop', '-t', '20', name);
  t.is(halt.code, 0);
});
