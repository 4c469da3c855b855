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
 *
 * esbuild runs as a child process of this process. Its asynchronous API keeps one service
 * child alive for the life of the process; after a re-exec (same PID, new process image)
 * that child exits and stays a zombie for good, since the new image knows nothing of it and
 * Node reaps only the children it spawned itself: one defunct `esbuild` per restart, and as
 * PID 1 of a container nobody else reaps them. So the hook uses `transformSync` without
 * esbuild's worker thread (ESBUILD_WORKER_THREADS=0, read once when esbuild is imported):
 * each transform is one short-lived child that Node waits for and reaps before the call
 * returns, so no esbuild process exists between imports, and none when the daemon execs.
 * It costs one esbuild start per .ts file transpiled (10–30 ms here), so the output is kept in
 * a private, content-keyed cache (transpile-cache.ts): a restart finds every unchanged file
 * there, and neither loads nor starts esbuild.
 */
import { createRequire } from 'node:module';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { cacheEntry, readCached, writeCached } from './transpile-cache.js';

export interface HookData {
  /** URL of the daemon's `dist/lib/index.js`. */
  postageUrl: string;
  /** The private folder of transpiled `.ts` files (transpile-cache.ts); none: no cache. */
  cacheDir?: string;
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
let cacheDir: string | undefined;

/** esbuild's options: TypeScript to ESM, standard decorators lowered for Node 20. */
const TRANSFORM_OPTIONS = {
  loader: 'ts',
  format: 'esm',
  target: 'es2022',
  sourcemap: 'inline',
  // Standard (TC39) decorators, as the library's own code uses; class fields as in tsc.
  tsconfigRaw: { compilerOptions: { experimentalDecorators: false, useDefineForClassFields: true } },
} as const;

/** What, besides the source, makes esbuild's output: its version and the options. */
let transformKey = '';

export function initialize(data: HookData): void {
  postageUrl = data.postageUrl;
  cacheDir = data.cacheDir;
  const { version } = createRequire(import.meta.url)('esbuild/package.json') as { version: string };
  transformKey = JSON.stringify({ esbuild: version, ...TRANSFORM_OPTIONS });
}

export async function resolve(specifier: string, context: Record<string, unknown>, next: Next<string, ResolveResult>): Promise<ResolveResult> {
  if (specifier === 'postage' && postageUrl) return { url: postageUrl, format: 'module', shortCircuit: true };
  return next(specifier, context);
}

const TS_FILE = /(?<!\.d)\.m?ts$/;

type TransformSync = (code: string, options: Record<string, unknown>) => { code: string };
let transformSync: TransformSync | undefined;

/** esbuild, loaded once with its worker thread (and so its long-lived service child) turned off. */
async function esbuildTransform(): Promise<TransformSync> {
  if (transformSync) return transformSync;
  const before = process.env['ESBUILD_WORKER_THREADS'];
  process.env['ESBUILD_WORKER_THREADS'] = '0';
  try {
    const esbuild = (await import('esbuild')) as unknown as { transformSync?: TransformSync; default?: { transformSync: TransformSync } };
    transformSync = esbuild.transformSync ?? esbuild.default?.transformSync;
  } finally {
    // Only esbuild's import reads it: plugins and their child processes never see it.
    if (before === undefined) delete process.env['ESBUILD_WORKER_THREADS'];
    else process.env['ESBUILD_WORKER_THREADS'] = before;
  }
  if (!transformSync) throw new Error('esbuild has no transformSync');
  return transformSync;
}

export async function load(url: string, context: Record<string, unknown>, next: Next<string, LoadResult>): Promise<LoadResult> {
  if (!url.startsWith('file:')) return next(url, context);
  const file = new URL(url);
  if (!TS_FILE.test(file.pathname)) return next(url, context);
  const path = fileURLToPath(file);
  const source = await readFile(file, 'utf8');
  const entry = cacheDir ? cacheEntry(cacheDir, path, source, transformKey) : undefined;
  const cached = entry ? await readCached(entry) : undefined;
  if (cached !== undefined) return { format: 'module', source: cached, shortCircuit: true };
  const transform = await esbuildTransform();
  const { code } = transform(source, { ...TRANSFORM_OPTIONS, sourcefile: path });
  if (entry) await writeCached(entry, code);
  return { format: 'module', source: code, shortCircuit: true };
}
