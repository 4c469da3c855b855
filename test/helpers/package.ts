/** The npm package as users get it: `npm pack` of the built tree (dist/ must be built). */
import fs from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { check } from './run.js';
import { ROOT } from './spawn.js';

/** Packs the project into `dir` and returns the tarball's path. */
export async function packTarball(t: ExecutionContext, dir: string): Promise<string> {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'daemon', 'main.js'))) throw new Error('dist/ is not built: run `npm run build` first');
  const r = await check('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: ROOT });
  const file = path.join(dir, r.stdout.trim().split('\n').at(-1)!);
  t.log(`npm pack: ${path.basename(file)}, ${(fs.statSync(file).size / 1024).toFixed(0)} KiB, ${(r.ms / 1000).toFixed(1)} s`);
  return file;
}
