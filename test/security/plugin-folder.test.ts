/**
 * FAULTS 22 and the security issue: the daemon loads only plugins that nobody but its own
 * user (or root) can change, as sshd's StrictModes. Refused with the path and the reason,
 * shown in `status`; the daemon and the other plugins run on.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import type { Connection, DaemonStatus } from 'postage';
import { unsafeFile, unsafeFolder } from '../../daemon/plugin-safety.js';
import { brokerTest, freshVhost } from '../helpers/broker.js';
import { controlProducer, FIXTURES, startDaemon, tempDir } from '../helpers/spawn.js';

const plugin = (name: string): string => `import { GenericApplication } from 'postage';\nexport default class P extends GenericApplication { static appName = '${name}'; }\n`;

async function status(connection: Connection): Promise<DaemonStatus> {
  const r = await controlProducer(connection).rpcCommand('status', {}, { _key: 'postaged', _timeout: 15, _max_retry: 0 });
  if (!r.ok) throw new Error(r.message);
  return r.value as DaemonStatus;
}

/** A folder holding one plugin per case: fine, group-writable, someone else's, a symlink out, a symlink in, a FIFO. */
function mixedFolder(t: Parameters<typeof tempDir>[0]): string {
  const dir = path.join(tempDir(t), 'plugins');
  fs.mkdirSync(dir, { mode: 0o755 });
  const write = (file: string, name: string, mode = 0o644): string => {
    const p = path.join(dir, file);
    fs.writeFileSync(p, plugin(name));
    fs.chmodSync(p, mode);
    return p;
  };
  write('fine.mjs', 'fine');
  fs.chownSync(write('group-writable.mjs', 'group-writable', 0o664), 0, 1); // group `daemon`: not root's private group
  fs.chownSync(write('others.mjs', 'others'), 65534, 65534); // nobody
  const outside = path.join(tempDir(t, 'postaged-outside-'), 'evil.mjs');
  fs.writeFileSync(outside, plugin('evil'));
  fs.symlinkSync(outside, path.join(dir, 'link-out.mjs'));
  fs.writeFileSync(path.join(dir, '.inside-target.mjs'), plugin('link-in'));
  fs.symlinkSync(path.join(dir, '.inside-target.mjs'), path.join(dir, 'link-in.mjs'));
  return dir;
}

test('the checks, one by one', (t) => {
  const dir = mixedFolder(t);
  t.is(unsafeFolder(dir), undefined);
  t.is(unsafeFile(path.join(dir, 'fine.mjs'), dir), undefined);
  t.regex(unsafeFile(path.join(dir, 'group-writable.mjs'), dir) ?? '', /writable by its group \(gid 1, mode 0664\)/);
  t.regex(unsafeFile(path.join(dir, 'others.mjs'), dir) ?? '', /owned by uid 65534, neither the daemon's user \(uid 0\) nor root/);
  t.regex(unsafeFile(path.join(dir, 'link-out.mjs'), dir) ?? '', /a symlink that leads out of the plugin folder \(to \/.*evil\.mjs\)/);
  t.is(unsafeFile(path.join(dir, 'link-in.mjs'), dir), undefined, 'a symlink within the folder is fine');
  const fifo = path.join(dir, 'fifo.mjs');
  execFileSync('mkfifo', [fifo]); // Node has no mkfifo
  t.is(unsafeFile(fifo, dir), 'not a regular file');
  fs.chmodSync(dir, 0o777);
  t.regex(unsafeFolder(dir) ?? '', /the plugin folder is writable by every user \(mode 0777\)/);
  const own = path.join(dir, 'own-group.mjs');
  fs.writeFileSync(own, plugin('own'));
  fs.chmodSync(own, 0o664);
  t.is(unsafeFile(own, dir), undefined, "group-writable by the owner's private group (root's, with no other member) is fine, as OpenSSH allows");
});

brokerTest('a mixed folder: the safe plugins run, the others are refused with the path and the reason, in the log and in status', async (t) => {
  const { url, connection } = await freshVhost(t, 'postaged-strict');
  const dir = mixedFolder(t);
  const daemon = await startDaemon(t, { url, args: ['--plugins', dir, '--no-watch'] });
  const s = await status(connection);
  const state = Object.fromEntries(s.applications.map((a) => [a.name, a]));
  t.is(state['fine']?.state, 'running');
  t.is(state['link-in']?.state, 'running');
  for (const [name, why] of [
    ['group-writable', /writable by its group/],
    ['others', /owned by uid 65534/],
    ['link-out', /leads out of the plugin folder/],
  ] as const) {
    t.is(state[name]?.state, 'failed', name);
    t.regex(state[name]?.error ?? '', why, name);
    t.regex(state[name]?.error ?? '', /refused, not loaded/);
    const line = daemon.find((l) => l.message === 'plugin failed to load' && String(l['file']).endsWith(`${name}.mjs`))[0];
    t.truthy(line, `${name}: logged with its path`);
    t.regex(String(line?.['reason']), why);
  }
  t.is(daemon.exit, undefined);
});

brokerTest('a folder everyone can write: nothing is loaded from it, the daemon runs; strictModes off loads it (the documented risk)', async (t) => {
  const { url, connection } = await freshVhost(t, 'postaged-strict');
  const dir = path.join(tempDir(t), 'plugins');
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(FIXTURES, 'echo-mjs.mjs'), path.join(dir, 'echo-mjs.mjs'));
  fs.chmodSync(dir, 0o777);
  const strict = await startDaemon(t, { url, args: ['--plugins', dir, '--no-watch', '--name', 'strict'] });
  const r = await controlProducer(connection).rpcCommand('status', {}, { _key: 'strict', _timeout: 15, _max_retry: 0 });
  const apps = (r.value as DaemonStatus).applications;
  t.like(apps.find((a) => a.name === 'echo-mjs'), { state: 'failed' });
  t.regex(apps.find((a) => a.name === 'echo-mjs')?.error ?? '', /the plugin folder is writable by every user \(mode 0777\)/);
  t.like(apps.find((a) => a.name === 'strict'), { state: 'running' });
  await strict.stop();
  await startDaemon(t, { url, args: ['--plugins', dir, '--no-watch', '--name', 'lax', '--no-strict-modes'] });
  const echo = await controlProducer(connection).rpcCommand('echo', { text: 'x' }, { _key: 'echo-mjs/rr', _timeout: 15, _max_retry: 0 });
  t.true(echo.ok, 'loaded with strictModes off');
});
