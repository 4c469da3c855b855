/**
 * The npm package as a user gets it: `npm pack`, then `npm install -g` of the tarball into a
 * prefix of its own (dependencies from the registry, native addons compiled), then the
 * installed commands run from a folder with no source tree around.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { freshVhost } from '../helpers/broker.js';
import { packTarball } from '../helpers/package.js';
import { check, run } from '../helpers/run.js';
import { DaemonProcess, tempDir } from '../helpers/spawn.js';

test.serial('the npm pack tarball installs globally and runs postaged --version, postage --help and a real daemon without the source tree', async (t) => {
  const dir = tempDir(t, 'postage-pkg-');
  const tarball = await packTarball(t, dir);
  const listing = (await check('tar', ['tzf', tarball])).stdout.split('\n').filter(Boolean);
  for (const part of ['package/dist/lib/index.js', 'package/dist/daemon/main.js', 'package/dist/cli/main.js', 'package/bin/postaged', 'package/systemd/postaged.service', 'package/config/systemd.jsonc', 'package/plugins/rpc-echo.ts']) {
    t.true(listing.includes(part), `${part} is packed`);
  }
  t.false(listing.some((f) => /^package\/(test|lib|daemon|cli|bench|scripts)\//.test(f) || f.startsWith('package/dist/bench/')), 'no sources, tests or benchmarks');
  t.log(`${listing.length} files packed`);

  // A fresh prefix and an empty working folder: nothing of this repository can be found.
  const prefix = path.join(dir, 'prefix');
  const work = path.join(dir, 'work');
  fs.mkdirSync(work);
  const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('POSTAGE') && k !== 'NODE_PATH' && !k.startsWith('npm_'))), HOME: process.env['HOME'] ?? '/root' };
  const install = await run('npm', ['install', '-g', '--prefix', prefix, '--omit=dev', '--no-audit', '--no-fund', tarball], { cwd: work, env });
  t.is(install.code, 0, install.stderr.slice(-3000));
  t.log(`npm install -g of the tarball: ${(install.ms / 1000).toFixed(1)} s`);
  const bin = path.join(prefix, 'bin');
  const installed = path.join(prefix, 'lib', 'node_modules', 'postage');
  t.true(fs.existsSync(path.join(installed, 'node_modules', '@jcoreio', 'kexec', 'build', 'Release', 'kexec.node')), 'kexec compiled (allowScripts)');
  t.true(fs.existsSync(path.join(installed, 'node_modules', 'unix-dgram', 'build', 'Release', 'unix_dgram.node')), 'unix-dgram compiled (allowScripts)');
  t.false(fs.existsSync(path.join(installed, 'node_modules', 'typescript')), 'no dev dependencies');

  const version = JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8')) as { version: string };
  const v = await run(path.join(bin, 'postaged'), ['--version'], { cwd: work, env });
  t.is(v.code, 0, v.stderr);
  t.is(v.stdout.trim(), version.version);
  const help = await run(path.join(bin, 'postage'), ['--help'], { cwd: work, env });
  t.is(help.code, 0, help.stderr);
  t.regex(help.stdout, /Usage: postage <command>/);
  t.regex(help.stdout, /restart/);

  // A real daemon from the installed package, with its example plugins (two of them TypeScript).
  const { url } = await freshVhost(t, 'postage-pkg');
  const child = spawn(path.join(bin, 'postaged'), ['--plugins', path.join(installed, 'plugins'), '--host', 'pkg-host'], {
    cwd: work,
    env: { ...env, POSTAGE_URL: url, POSTAGED_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const daemon = new DaemonProcess(child);
  t.teardown(async () => {
    if (!daemon.exit) {
      child.kill('SIGKILL');
      await daemon.exited;
    }
  });
  const ready = await daemon.waitForLine('postaged ready', { timeout: 30_000 });
  t.deepEqual((ready['applications'] as string[]).sort(), ['advanced-echo:running', 'basic-echo:running', 'postaged:running', 'rpc-echo:running']);
  const ping = await run(path.join(bin, 'postage'), ['ping', 'postaged@pkg-host', '--expect', '1', '--json'], { cwd: work, env: { ...env, POSTAGE_URL: url } });
  t.is(ping.code, 0, ping.stderr);
  t.is((JSON.parse(ping.stdout) as Array<{ value: { pid: string } }>)[0]?.value.pid, String(daemon.pid));
  const echo = await run(path.join(bin, 'postage'), ['rpc', 'rpc-echo/rr', 'echo', '"packed"'], { cwd: work, env: { ...env, POSTAGE_URL: url } });
  t.is(echo.code, 0, echo.stderr);
  t.is(echo.stdout.trim(), 'packed');
  t.deepEqual(await daemon.stop(), { code: 0, signal: null });
});
