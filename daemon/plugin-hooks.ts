/**
 * Module customization hooks for plugins (registered with `module.register`; they run on
 * Node's loader thread, not the main thread):
 *
 * - `resolve` maps the bare specifier `postage` to the daemon's own copy of the library,
 *   wherever the plugin lives (/tmp, /etc/postaged/plugins): a plugin and the daemon then
 *   share one `GenericApplication` class (`===`, not only `instanceof`), one restart hook
 *   and one connection registry.
 * - `load` transpiles `.ts` / `.mts` files to ESM with esbuild (TypeScript 5 standard
 *   decorators lowered for Node 20, which runs none natively). The file keeps its own URL,
 *   so its relative imports (`./helper.ts`) resolve and load the same way. A `.ts` plugin
 *   is always an ES module, whatever the nearest package.json says.
 */

interface HookData {
  /** URL of the daemon's `dist/lib/index.js`. */
  postageUrl: string;
}

type Next<A, R> = (a: A, context: Record<string, unknown>) => Promise<R>;
interface ResolveResult {
  url: string;
  format?: string | null;
  shortCircuit?: boolean;
}
interface LoadResult {
  format: string;
  source?: string | ArrayBuffer | Uint8Array | null;
  shortCircuit?: boolean;
}

let postageUrl = '';

export function initialize(data: HookData): void {
  postageUrl = data.postageUrl;
}

export async function resolve(specifier: string, context: Record<string, unknown>, next: Next<string, ResolveResult>): Promise<ResolveResult> {
  if (specifier === 'postage' && postageUrl) return { url: postageUrl, format: 'module', shortCircuit: true };
  return next(specifier, context);
}

const TS_FILE = /(?<!\.d)\.m?ts$/;

type Transform = (code: string, options: Record<string, unknown>) => Promise<{ code: string }>;
let transform: Transform | undefined;

export async function load(url: string, context: Record<string, unknown>, next: Next<string, LoadResult>): Promise<LoadResult> {
  if (!url.startsWith('file:')) return next(url, context);
  const file = new URL(url);
  if (!TS_FILE.test(file.pathname)) return next(url, context);
  const { readFile } = await import('node:fs/promises');
  const { fileURLToPath } = await import('node:url');
  if (!transform) {
    const esbuild = (await import('esbuild')) as unknown as { transform: Transform; default?: { transform: Transform } };
    transform = esbuild.transform ?? esbuild.default?.transform;
  }
  const path = fileURLToPath(file);
  const source = await readFile(file, 'utf8');
  const out = await transform!(source, {
    loader: 'ts',
    format: 'esm',
    target: 'es2022',
    sourcefile: path,
    sourcemap: 'inline',
    // Standard (TC39) decorators, as the library's own code uses; class fields as in tsc.
    tsconfigRaw: { compilerOptions: { experimentalDecorators: false, useDefineForClassFields: true } },
  });
  return { format: 'module', source: out.code, shortCircuit: true };
}
