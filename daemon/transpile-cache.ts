/**
 * The cache of transpiled `.ts` plugins: a restart (a new process image) would otherwise
 * start esbuild and transpile every `.ts` file again, although almost none changed.
 *
 * - Where: `$CACHE_DIRECTORY/transpiled` (systemd's `CacheDirectory=`), else
 *   `$XDG_CACHE_HOME/postaged/transpiled`, else `~/.cache/postaged/transpiled`.
 * - Private: the folder is created mode 0700 and used only if it is a real folder (no symlink)
 *   owned by the daemon's user with no access for anyone else, in a parent no other user can
 *   write; entries are written 0600. Otherwise the daemon says why, once, and transpiles as
 *   if there were no cache.
 * - Keyed by content: an entry's name is the SHA-256 of the file's path and source, of
 *   esbuild's version and of the transform options. A changed plugin is a new key, never an
 *   old entry; a file in the folder runs only if it is what esbuild made of exactly the source
 *   the operator dropped (nobody but the daemon's user and root can write the folder).
 * - Bounded: one entry per source path; writing a new version of a file removes the older ones,
 *   and entries not written for `MAX_AGE_MS` (plugin folders that went away, e.g. temporary
 *   ones) go at the next write.
 *
 * The entries are read and written by the module hooks (plugin-hooks.ts, on the loader
 * thread); the folder is chosen and checked on the main thread (`prepareTranspileCache`).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { writableByOthers } from './plugin-safety.js';

/** An entry not written for this long is removed at the next write (an unchanged plugin's is then written again). */
export const MAX_AGE_MS = 30 * 24 * 3600_000;

/** The folder to use, or why there is none. */
export type TranspileCache = { dir: string; problem?: undefined } | { dir?: undefined; problem: string };

/** Where the cache would be, from the environment (nothing is created). */
export function transpileCacheDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  // CACHE_DIRECTORY may list several folders (colon-separated): the first is this unit's.
  const systemd = env['CACHE_DIRECTORY']?.split(':')[0];
  if (systemd) return path.join(systemd, 'transpiled');
  const xdg = env['XDG_CACHE_HOME'];
  if (xdg && path.isAbsolute(xdg)) return path.join(xdg, 'postaged', 'transpiled');
  const home = os.homedir();
  return home ? path.join(home, '.cache', 'postaged', 'transpiled') : undefined;
}

/** Creates the cache folder if needed and checks that it is private; never throws. */
export function prepareTranspileCache(env: NodeJS.ProcessEnv = process.env): TranspileCache {
  const dir = transpileCacheDir(env);
  if (!dir) return { problem: 'no cache folder: neither CACHE_DIRECTORY, XDG_CACHE_HOME nor a home folder is set' };
  const uid = process.getuid?.() ?? 0;
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = fs.lstatSync(dir);
    if (!st.isDirectory()) return { problem: `${dir} is not a folder` };
    if (st.uid !== uid) return { problem: `${dir} is owned by uid ${st.uid}, not the daemon's user (uid ${uid})` };
    if (st.mode & 0o077) return { problem: `${dir} can be used by other users (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}): chmod 700 it` };
    const parent = path.dirname(dir);
    const unsafeParent = writableByOthers(`its parent ${parent}`, fs.statSync(parent), uid);
    if (unsafeParent) return { problem: `${dir}: ${unsafeParent}` };
  } catch (err) {
    return { problem: `${dir} cannot be used (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` };
  }
  return { dir };
}

const sha256 = (...parts: string[]): string => {
  const hash = createHash('sha256');
  for (const p of parts) hash.update(p).update('\0');
  return hash.digest('hex');
};

/** The entry of one transpiled source: `<hash of the path>-<hash of everything that makes the output>.mjs`. */
export function cacheEntry(dir: string, file: string, source: string, transformKey: string): { file: string; prefix: string } {
  const prefix = `${sha256(file).slice(0, 16)}-`;
  return { file: path.join(dir, `${prefix}${sha256(transformKey, file, source)}.mjs`), prefix };
}

/** The cached output, if there is one. */
export async function readCached(entry: { file: string }): Promise<string | undefined> {
  try {
    return await readFile(entry.file, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * Stores an output (atomically: written aside, then renamed), then removes the older versions
 * of the same file and the entries older than `MAX_AGE_MS`. Never throws.
 */
export async function writeCached(entry: { file: string; prefix: string }, code: string, now = Date.now()): Promise<void> {
  const dir = path.dirname(entry.file);
  const aside = `${entry.file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  try {
    await writeFile(aside, code, { mode: 0o600, flag: 'wx' });
    await rename(aside, entry.file);
  } catch {
    await unlink(aside).catch(() => undefined);
    return;
  }
  const name = path.basename(entry.file);
  const stale = async (f: string): Promise<boolean> => {
    if (f === name || !f.endsWith('.mjs')) return false;
    if (f.startsWith(entry.prefix)) return true;
    return now - (await stat(path.join(dir, f))).mtimeMs > MAX_AGE_MS;
  };
  const files = await readdir(dir).catch(() => []);
  await Promise.all(files.map(async (f) => ((await stale(f).catch(() => false)) ? unlink(path.join(dir, f)).catch(() => undefined) : undefined)));
}
