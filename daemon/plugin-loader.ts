/**
 * The plugin loader: one function that imports a plugin file, unwraps the module shape and
 * checks that the default export is a GenericApplication subclass. It never throws: a
 * failure comes back with the file and the reason, and touches nothing else.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { GenericApplication, PostageError } from 'postage';
import { isName } from './config-formats.js';
import { unsafeFile, unsafeFolder } from './plugin-safety.js';

/** File extensions loaded as plugins. */
export const PLUGIN_EXTENSIONS = ['.js', '.mjs', '.cjs', '.ts', '.mts'] as const;

/** Whether a file name is a plugin: a known extension, not a declaration, not hidden or `_private`. */
export function isPluginFile(file: string): boolean {
  const base = path.basename(file);
  if (base.startsWith('.') || base.startsWith('_') || /\.d\.m?ts$/.test(base)) return false;
  return (PLUGIN_EXTENSIONS as readonly string[]).includes(path.extname(base));
}

/** The application name a file gets when its class has no `static appName`. */
export function baseName(file: string): string {
  return path.basename(file, path.extname(file));
}

export type AppClass = typeof GenericApplication;

export type LoadedPlugin =
  | { ok: true; file: string; name: string; appClass: AppClass; warning?: string }
  | { ok: false; file: string; name: string; reason: string };

export interface LoadPluginOptions {
  /** Milliseconds the import may take (a top-level await that never settles). Default: 10000. */
  timeout?: number;
  /** Refuse a folder or file others can write, a symlink out of the folder, a non-regular file (plugin-safety.ts). Default: true. */
  strictModes?: boolean;
}

const require = createRequire(import.meta.url);

function describeExports(ns: Record<string, unknown>): string {
  const keys = Object.keys(ns);
  return keys.length > 0 ? keys.join(', ') : 'none';
}

/**
 * Imports `file` and returns its application class and name. The import URL carries the
 * file's mtime, so a file added again after a change is imported afresh (ES modules cannot
 * be unloaded; a changed plugin that is running is handled by a re-exec instead).
 */
export async function loadPlugin(file: string, options: LoadPluginOptions = {}): Promise<LoadedPlugin> {
  const absolute = path.resolve(file);
  const fallbackName = baseName(absolute);
  const fail = (reason: string, name = fallbackName): LoadedPlugin => ({ ok: false, file: absolute, name, reason });
  if (options.strictModes ?? true) {
    const dir = path.dirname(absolute);
    const unsafe = unsafeFolder(dir) ?? unsafeFile(absolute, dir);
    if (unsafe) return fail(`refused, not loaded: ${unsafe} (strictModes; see docs/security.md)`);
  }
  let ns: Record<string, unknown>;
  let timer: NodeJS.Timeout | undefined;
  try {
    const stat = fs.statSync(absolute);
    // CommonJS modules are cached by path, whatever the URL's query says.
    delete require.cache[absolute];
    const url = `${pathToFileURL(absolute).href}?v=${Math.trunc(stat.mtimeMs)}`;
    const timeout = options.timeout ?? 10_000;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new PostageError('POSTAGE_ERR_TIMEOUT', `import did not finish within ${timeout} ms`, { what: 'import', timeoutMs: timeout })), timeout);
    });
    ns = (await Promise.race([import(url), expired])) as Record<string, unknown>;
  } catch (err) {
    const e = err as Error;
    return fail(`${e?.name ?? 'Error'} while importing: ${e?.message ?? String(err)}`);
  } finally {
    clearTimeout(timer);
  }

  // Module shapes: ESM `export default X`; CommonJS `module.exports = X` (import gives it as
  // `default`); CommonJS `exports.default = X` or transpiled ESM (`default.default`).
  let candidate: unknown = ns['default'];
  if (candidate && typeof candidate === 'object' && typeof (candidate as Record<string, unknown>)['default'] === 'function') {
    candidate = (candidate as Record<string, unknown>)['default'];
  }
  if (candidate === undefined) return fail(`no default export (exports: ${describeExports(ns)}); export a GenericApplication subclass as default`);
  if (typeof candidate !== 'function' || !candidate.prototype) return fail(`the default export is a ${candidate === null ? 'null' : typeof candidate}, not a GenericApplication subclass`);
  const cls = candidate as AppClass;
  // `instanceof` is brand-based (works across copies of the library); `isPrototypeOf` tells
  // whether the class extends the daemon's own copy.
  if (cls === GenericApplication || !(cls.prototype instanceof GenericApplication)) {
    return fail(`the default export (class ${cls.name || '(anonymous)'}) does not extend GenericApplication`);
  }
  const declared = (cls as { appName?: unknown }).appName;
  if (declared !== undefined && typeof declared !== 'string') return fail(`static appName must be a string (got ${typeof declared})`);
  const name = declared ?? fallbackName;
  if (!isName(name)) return fail(`application name ${JSON.stringify(name)} is not usable in addresses (no "@", "#", "/", ":" or spaces)`, name);
  const sameCopy = GenericApplication.prototype.isPrototypeOf(cls.prototype);
  return sameCopy
    ? { ok: true, file: absolute, name, appClass: cls }
    : { ok: true, file: absolute, name, appClass: cls, warning: 'the plugin extends another copy of postage than the daemon runs (import it as "postage")' };
}
