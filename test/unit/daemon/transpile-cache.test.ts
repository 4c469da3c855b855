import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { cacheEntry, MAX_AGE_MS, prepareTranspileCache, readCached, transpileCacheDir, writeCached } from '../../../daemon/transpile-cache.js';

/** A private folder of this test's own (os.tmpdir() is writable by everyone: refused as a parent). */
function home(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postage-cache-test-'));
  fs.chmodSync(dir, 0o700);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('where: systemd CacheDirectory first, then XDG_CACHE_HOME, then ~/.cache', (t) => {
  t.is(transpileCacheDir({ CACHE_DIRECTORY: '/var/cache/postaged:/var/cache/other', XDG_CACHE_HOME: '/x' }), '/var/cache/postaged/transpiled');
  t.is(transpileCacheDir({ XDG_CACHE_HOME: '/x' }), '/x/postaged/transpiled');
  t.is(transpileCacheDir({ XDG_CACHE_HOME: 'relative' }), path.join(os.homedir(), '.cache', 'postaged', 'transpiled'));
});

test('the folder is created private (0700), and used only while it stays so', (t) => {
  const base = home(t);
  const cache = prepareTranspileCache({ XDG_CACHE_HOME: base });
  t.is(cache.dir, path.join(base, 'postaged', 'transpiled'));
  t.is(fs.statSync(cache.dir!).mode & 0o777, 0o700);
  fs.chmodSync(cache.dir!, 0o770);
  t.regex(prepareTranspileCache({ XDG_CACHE_HOME: base }).problem ?? '', /can be used by other users \(mode 0770\): chmod 700 it/);
});

test('refused: a symlink, or a parent other users can write', (t) => {
  const base = home(t);
  const elsewhere = path.join(base, 'elsewhere');
  fs.mkdirSync(elsewhere, { mode: 0o700 });
  fs.mkdirSync(path.join(base, 'postaged'), { mode: 0o700 });
  fs.symlinkSync(elsewhere, path.join(base, 'postaged', 'transpiled'));
  t.regex(prepareTranspileCache({ XDG_CACHE_HOME: base }).problem ?? '', /is not a folder/);
  fs.rmSync(path.join(base, 'postaged', 'transpiled'));
  fs.chmodSync(path.join(base, 'postaged'), 0o777);
  t.regex(prepareTranspileCache({ XDG_CACHE_HOME: base }).problem ?? '', /writable by every user/);
});

test('entries: keyed by path, source and transform; private; one version per file kept', async (t) => {
  const dir = prepareTranspileCache({ XDG_CACHE_HOME: home(t) }).dir!;
  const v1 = cacheEntry(dir, '/plugins/a.ts', 'source 1', 'esbuild 1');
  t.is(await readCached(v1), undefined);
  await writeCached(v1, 'out 1');
  t.is(await readCached(v1), 'out 1');
  t.is(fs.statSync(v1.file).mode & 0o777, 0o600);
  t.not(cacheEntry(dir, '/plugins/a.ts', 'source 1', 'esbuild 2').file, v1.file, 'another esbuild or options: another entry');
  t.not(cacheEntry(dir, '/plugins/b.ts', 'source 1', 'esbuild 1').file, v1.file, 'another file: another entry');
  const other = cacheEntry(dir, '/plugins/b.ts', 'source 1', 'esbuild 1');
  await writeCached(other, 'out b');
  const v2 = cacheEntry(dir, '/plugins/a.ts', 'source 2', 'esbuild 1');
  t.is(await readCached(v2), undefined, 'a changed source is a new key, never the old output');
  await writeCached(v2, 'out 2');
  t.is(await readCached(v1), undefined, 'the older version of the same file is gone');
  t.is(await readCached(other), 'out b', 'other files stay');
  t.deepEqual(fs.readdirSync(dir).sort(), [path.basename(v2.file), path.basename(other.file)].sort());
});

test('entries not written for MAX_AGE_MS go at the next write (plugin folders that went away)', async (t) => {
  const dir = prepareTranspileCache({ XDG_CACHE_HOME: home(t) }).dir!;
  const gone = cacheEntry(dir, '/tmp/x/gone.ts', 'old', 'esbuild 1');
  const kept = cacheEntry(dir, '/plugins/kept.ts', 'recent', 'esbuild 1');
  await writeCached(gone, 'out');
  await writeCached(kept, 'out');
  const old = (Date.now() - MAX_AGE_MS - 60_000) / 1000;
  fs.utimesSync(gone.file, old, old);
  await writeCached(cacheEntry(dir, '/plugins/new.ts', 'new', 'esbuild 1'), 'out');
  t.false(fs.existsSync(gone.file));
  t.true(fs.existsSync(kept.file));
});
