/**
 * Makes `postage` resolve, from any plugin folder, to the daemon's own copy of the library,
 * and `.ts` plugins load (see plugin-hooks.ts). Installed once, before the first plugin import.
 */
import Module, { register } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { HookData } from './plugin-hooks.js';

let installed: string | undefined;

/** The URL of the library this daemon runs (`dist/lib/index.js`). */
export function postageUrl(): string {
  // The package self-reference: exactly the module instance the daemon itself imported.
  return import.meta.resolve('postage');
}

/**
 * Installs the hooks; returns the URL `postage` resolves to. Idempotent. `cacheDir`: the
 * private folder of transpiled `.ts` files (transpile-cache.ts), if there is one.
 */
export function installPluginResolution(cacheDir?: string): string {
  if (installed) return installed;
  const url = postageUrl();
  const data: HookData = { postageUrl: url, ...(cacheDir ? { cacheDir } : {}) };
  register(new URL('./plugin-hooks.js', import.meta.url), { data });
  // `require('postage')` from a .cjs plugin does not go through the ESM hooks on Node 20:
  // the CommonJS resolver is taught the same mapping. Node >= 20.19 can require() the ESM
  // library, and hands back the same module instance as `import`.
  const file = fileURLToPath(url);
  const cjs = Module as unknown as { _resolveFilename: (request: string, ...rest: unknown[]) => string };
  const original = cjs._resolveFilename;
  cjs._resolveFilename = function resolvePostage(this: unknown, request: string, ...rest: unknown[]): string {
    if (request === 'postage') return file;
    return original.call(this, request, ...rest);
  };
  installed = url;
  return url;
}
