/**
 * postaged's plugins, on a real broker with the real binary: folders outside the project,
 * every module kind, broken plugins, hot-load, changed and removed files.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ExecutionContext } from 'ava';
import type { MessageResult } from 'postage';
import { brokerTest, freshVhost } from '../helpers/broker.js';
import { controlProducer, FIXTURES, pluginFolder, ROOT, startDaemon } from '../helpers/spawn.js';
import { sleep, waitFor } from '../helpers/wait-for.js';

type Status = { generation: number; applications: Array<{ name: string; file: string | null; state: string; error?: string }> };

async function rpc(t: ExecutionContext, connection: Parameters<typeof controlProducer>[0], key: string, command: string, parameters: unknown = {}, timeout = 5): Promise<MessageResult> {
  const result = await controlProducer(connection).rpcCommand(command, parameters, { _key: key, _timeout: timeout, _max_retry: 0 });
  if (command !== 'status') t.log(`${command} -> ${key}: ${JSON.stringify(result.body.content)}`);
  return result;
}

async function status(t: ExecutionContext, connection: Parameters<typeof controlProducer>[0]): Promise<Status> {
  const result = await rpc(t, connection, 'postaged', 'status');
  if (!result.ok) throw new Error(`status failed: ${result.message}`);
  return result.value as Status;
}

brokerTest('a folder outside the project: a .ts plugin with decorators, an .mjs and a .cjs plugin get the daemon’s own postage', async (t) => {
  const { url, connection } = await freshVhost(t, 'postaged-plugins');
  const dir = pluginFolder(t, ['echo-ts.ts', '_helper.ts', 'echo-mjs.mjs', 'echo-cjs.cjs']);
  t.false(dir.startsWith(ROOT), 'the plugin folder is outside the project');
  const daemon = await startDaemon(t, { url, args: ['--plugins', dir] });

  const ts = await rpc(t, connection, 'echo-ts/rr', 'echo', { text: 'hi' });
  t.true(ts.ok);
  t.deepEqual(ts.value, { text: 'HI!', from: 'echo-ts' }, 'decorators registered the handler; the relative .ts import works');
  const mjs = await rpc(t, connection, 'echo-mjs/rr', 'echo', { text: 'hi' });
  t.deepEqual(mjs.value, { text: 'hi', from: 'echo-mjs' });
  const cjs = await rpc(t, connection, 'echo-cjs/rr', 'echo', { text: 'hi' });
  t.deepEqual(cjs.value, { text: 'hi', from: 'echo-cjs' });

  const identity = await rpc(t, connection, 'echo-ts/rr', 'identity');
  t.is((identity.value as { postageUrl: string }).postageUrl, pathToFileURL(path.join(ROOT, 'dist', 'lib', 'index.js')).href, "'postage' resolved to the daemon's own copy");
  t.deepEqual(
    daemon.find((l) => /another copy of postage/.test(l.message)),
    [],
    'the loader found every class extends the very GenericApplication the daemon runs (===)',
  );
  const s = await status(t, connection);
  t.deepEqual(s.applications.map((a) => `${a.name}:${a.state}`).sort(), ['echo-cjs:running', 'echo-mjs:running', 'echo-ts:running', 'postaged:running']);
  t.false(s.applications.some((a) => a.name === '_helper'), 'files starting with _ are not plugins');
});

brokerTest('broken plugins are reported with file and reason; the good ones answer', async (t) => {
  const { url, connection } = await freshVhost(t, 'postaged-broken');
  const broken = ['bad-export.mjs', 'throws-on-import.mjs', 'syntax-error.js', 'throws-in-create.mjs', 'dup-a.mjs', 'dup-b.mjs'];
  const dir = pluginFolder(t, ['echo-mjs.mjs', ...broken]);
  const daemon = await startDaemon(t, { url, args: ['--plugins', dir] });

  const echo = await rpc(t, connection, 'echo-mjs/rr', 'echo', { text: 'still here' });
  t.deepEqual(echo.value, { text: 'still here', from: 'echo-mjs' });
  const dup = await rpc(t, connection, 'dup/rr', 'who');
  t.is(dup.value, 'dup-a', 'the first plugin with a name is kept');

  const s = await status(t, connection);
  const byFile = (f: string) => s.applications.find((a) => a.file === path.join(dir, f));
  const expect: Record<string, RegExp> = {
    'bad-export.mjs': /does not extend GenericApplication/,
    'throws-on-import.mjs': /boom at import time/,
    'syntax-error.js': /SyntaxError/,
    'throws-in-create.mjs': /create\(\) failed: cannot create: database unreachable/,
    'dup-b.mjs': /duplicate application name "dup": already used by .*dup-a\.mjs/,
  };
  for (const [file, reason] of Object.entries(expect)) {
    const app = byFile(file);
    t.is(app?.state, 'failed', `${file} is shown as failed`);
    t.regex(app?.error ?? '', reason, `${file}: reason`);
    t.true(
      daemon.lines.some((l) => l.level === 'error' && l['file'] === path.join(dir, file) && reason.test(String(l['reason']))),
      `${file}: an error line names the file and the reason`,
    );
  }
  t.is(byFile('dup-a.mjs')?.state, 'running');
  t.is(byFile('echo-mjs.mjs')?.state, 'running');
});

brokerTest('hot-load: a plugin copied into the watched folder answers ping within a second', async (t) => {
  const { url, connection } = await freshVhost(t, 'postaged-hotload');
  const dir = pluginFolder(t, ['echo-mjs.mjs']);
  const daemon = await startDaemon(t, { url, args: ['--plugins', dir] });
  const before = await rpc(t, connection, 'echo-mjs/rr', 'echo', { text: 'a' });
  t.true(before.ok);

  const t0 = performance.now();
  const wall0 = Date.now();
  // Written beside, then renamed in: the way a deploy drops a file.
  fs.copyFileSync(path.join(FIXTURES, 'echo-cjs.cjs'), path.join(dir, '.echo-cjs.cjs.tmp'));
  fs.renameSync(path.join(dir, '.echo-cjs.cjs.tmp'), path.join(dir, 'echo-cjs.cjs'));
  const ping = await waitFor(
    'ping from the hot-loaded plugin',
    async () => {
      // A ping sent before the queue exists is unroutable and lost: retry every 100 ms.
      const r = await controlProducer(connection).rpcCommand('ping', {}, { _key: 'echo-cjs', _timeout: 0.1, _max_retry: 0 });
      return r.ok ? r : undefined;
    },
    10_000,
    10,
  );
  const latency = performance.now() - t0;
  t.log(`hot-load latency (file renamed in -> ping answered): ${latency.toFixed(0)} ms`);
  t.is((ping.value as { name: string }).name, 'echo-cjs');
  const loaded = daemon.find('plugin file handled')[0];
  const started = daemon.find((l) => l.message === 'application started' && l.app === 'echo-cjs')[0];
  t.log(`file renamed in -> application started (log time): ${Date.parse(String(started?.['timestamp'])) - wall0} ms; import + start: ${String(loaded?.['ms'])} ms`);
  const s = await status(t, connection);
  t.is(s.generation, 1, 'no restart for a new plugin');
  t.true(s.applications.some((a) => a.name === 'echo-mjs' && a.state === 'running'), 'the neighbour kept running');
});

brokerTest('changed plugin files restart the daemon once (debounced); a removed one stops its application', async (t) => {
  const { url, connection } = await freshVhost(t, 'postaged-watch');
  const dir = pluginFolder(t, ['echo-mjs.mjs', 'echo-cjs.cjs']);
  const daemon = await startDaemon(t, { url, args: ['--plugins', dir] });
  const pid = daemon.pid;

  // Ten saves in quick succession, over two files: one restart.
  for (let i = 0; i < 10; i++) {
    const file = path.join(dir, i % 2 ? 'echo-mjs.mjs' : 'echo-cjs.cjs');
    fs.appendFileSync(file, `\n// save ${i}\n`);
    await sleep(20);
  }
  await daemon.waitForLine('postaged ready', { count: 2, timeout: 20_000 });
  await sleep(1500); // room for a second (wrong) restart to show up
  t.is(daemon.find('re-exec').length, 1, 'ten saves: one restart');
  t.is(daemon.pid, pid);
  const s = await status(t, connection);
  t.is(s.generation, 2);
  t.regex(String((s as unknown as { lastRestartReason: string }).lastRestartReason), /plugin changed: .*echo-(cjs|mjs)/);

  fs.rmSync(path.join(dir, 'echo-cjs.cjs'));
  await daemon.waitForLine((l) => l.message === 'application stopped' && l.app === 'echo-cjs' && l['reason'] === 'quit');
  const after = await status(t, connection);
  t.false(after.applications.some((a) => a.name === 'echo-cjs'), 'the removed plugin is gone from status');
  t.is(after.generation, 2, 'removing a plugin does not restart the daemon');
  const echo = await rpc(t, connection, 'echo-mjs/rr', 'echo', { text: 'b' });
  t.true(echo.ok, 'the other plugin still answers');
});

brokerTest('.ts plugins are transpiled once: a restart reads the private cache, keyed by the source; a changed file is transpiled afresh', async (t) => {
  const { url, connection } = await freshVhost(t, 'postaged-transpile-cache');
  const dir = pluginFolder(t, ['echo-ts.ts', '_helper.ts']);
  const cacheHome = path.join(path.dirname(dir), 'cache');
  fs.mkdirSync(cacheHome, { mode: 0o700 });
  const cache = path.join(cacheHome, 'postaged', 'transpiled');
  const daemon = await startDaemon(t, { url, args: ['--plugins', dir], env: { XDG_CACHE_HOME: cacheHome, CACHE_DIRECTORY: undefined, POSTAGED_WATCH: 'false' } });
  t.deepEqual(daemon.find((l) => /not cached/.test(l.message)), []);
  t.is(fs.statSync(cache).mode & 0o777, 0o700);
  const entries = fs.readdirSync(cache);
  t.is(entries.length, 2, 'one entry for the plugin, one for its relative .ts import');
  for (const e of entries) t.is(fs.statSync(path.join(cache, e)).mode & 0o777, 0o600, e);

  // What runs after a restart is the cached output: marked here (as the daemon's user) to tell it from a transpile.
  const entry = entries.map((e) => path.join(cache, e)).find((f) => fs.readFileSync(f, 'utf8').includes("from: \"echo-ts\""))!;
  fs.writeFileSync(entry, fs.readFileSync(entry, 'utf8').replace("from: \"echo-ts\"", "from: \"echo-ts (cached)\""));
  await controlProducer(connection).sendCommand('restart', {}, { _key: 'postaged' });
  await daemon.waitForLine('postaged ready', { count: 2, timeout: 20_000 });
  t.deepEqual((await rpc(t, connection, 'echo-ts/rr', 'echo', { text: 'a' })).value, { text: 'A!', from: 'echo-ts (cached)' });

  // A changed source is another key: never the old entry, which goes.
  fs.appendFileSync(path.join(dir, 'echo-ts.ts'), '\n// changed\n');
  await controlProducer(connection).sendCommand('restart', {}, { _key: 'postaged' });
  await daemon.waitForLine('postaged ready', { count: 3, timeout: 20_000 });
  t.deepEqual((await rpc(t, connection, 'echo-ts/rr', 'echo', { text: 'b' })).value, { text: 'B!', from: 'echo-ts' });
  t.false(fs.existsSync(entry), 'the older version of the file is removed');
  t.is(fs.readdirSync(cache).length, 2);
});

brokerTest('twelve plugins on the one connection, hot-loaded and restarted: nothing on stderr (no MaxListenersExceededWarning)', async (t) => {
  const { url, connection } = await freshVhost(t, 'postaged-many');
  const dir = pluginFolder(t, []);
  const plugin = "import { GenericApplication } from 'postage';\nexport default class P extends GenericApplication {}\n";
  for (let i = 1; i <= 11; i++) fs.writeFileSync(path.join(dir, `many${i}.mjs`), plugin);
  const daemon = await startDaemon(t, { url, args: ['--plugins', dir] });
  fs.writeFileSync(path.join(dir, '.many12.tmp'), plugin);
  fs.renameSync(path.join(dir, '.many12.tmp'), path.join(dir, 'many12.mjs'));
  await daemon.waitForLine((l) => l.message === 'application started' && l.app === 'many12');
  await controlProducer(connection).sendCommand('restart', {}, { _key: 'postaged' });
  await daemon.waitForLine('postaged ready', { count: 2, timeout: 20_000 });
  t.is((await status(t, connection)).applications.filter((a) => a.state === 'running').length, 13);
  t.is(daemon.stderr, '');
});
