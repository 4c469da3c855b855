/**
 * The operations files: the systemd unit passes `systemd-analyze verify` and keeps the
 * contract (own user, no restart on exit 78, reload = SIGHUP); the Dockerfile runs postaged
 * itself as PID 1, not as root. (No Docker engine here: the image is not built by the tests.)
 */
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { ROOT } from '../helpers/spawn.js';

const run = promisify(execFile);
const UNIT = path.join(ROOT, 'systemd', 'postaged.service');

function hasSystemdAnalyze(): boolean {
  try {
    execFileSync('systemd-analyze', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const verify = hasSystemdAnalyze() ? test : test.skip;
if (!hasSystemdAnalyze()) console.warn('systemd-analyze not found: the unit verification is skipped');

verify('systemd/postaged.service passes systemd-analyze verify', async (t) => {
  const { stdout, stderr } = await run('systemd-analyze', ['verify', UNIT]);
  t.is(stderr.trim(), '', stderr);
  t.is(stdout.trim(), '');
});

test('the unit runs postaged as its own user, never restarts on a config error, reloads with SIGHUP', (t) => {
  const unit = fs.readFileSync(UNIT, 'utf8');
  const has = (line: RegExp) => t.regex(unit, line);
  has(/^User=postaged$/m);
  has(/^RestartPreventExitStatus=78$/m);
  has(/^ExecStart=\/usr\/bin\/env postaged /m);
  has(/^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
  has(/^Type=notify$/m);
  has(/^WatchdogSec=\d+$/m);
  has(/^NoNewPrivileges=yes$/m);
  has(/^ProtectSystem=strict$/m);
  t.notRegex(unit, /^MemoryDenyWriteExecute=yes/m, "V8's JIT needs writable code pages");
});

test('the Dockerfile: multi-stage, non-root, postaged itself as the entrypoint', (t) => {
  const docker = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
  t.true((docker.match(/^FROM /gm) ?? []).length >= 2, 'multi-stage');
  t.regex(docker, /^USER node$/m);
  t.regex(docker, /^ENTRYPOINT \["\/opt\/postage\/bin\/postaged"\]$/m);
  const instructions = docker.split('\n').filter((l) => !l.trimStart().startsWith('#')).join('\n');
  t.notRegex(instructions, /tini|dumb-init|--init/, 'postaged is PID 1, so a restart keeps the container (comments may mention --init)');
  for (const src of [...docker.matchAll(/^COPY (?!--from)(\S+)/gm)].map((m) => m[1]!)) t.true(fs.existsSync(path.join(ROOT, src)), `COPY ${src} exists`);
});
