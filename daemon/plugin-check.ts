/**
 * Test-imports a changed plugin before the daemon restarts for it. ES modules cannot be
 * unloaded, so new code for a running plugin means a new process image; if the new code does
 * not load (a syntax error, a bad export), re-exec'ing would replace a working generation by
 * one without that plugin. So the file is first imported in a child process, with the
 * daemon's own module hooks (`postage` resolution, `.ts` transpiling) and loader: only when it
 * loads there does the daemon restart. The child runs the plugin's top-level code once, then
 * exits; it opens no broker connection of its own.
 *
 * Run as a script (`node plugin-check.js FILE TIMEOUT_MS STRICT_MODES [CACHE_DIR]`), it prints one JSON line:
 * `{"ok":true,"name":…}` or `{"ok":false,"reason":…}`.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export type PluginCheck = { ok: true; name: string } | { ok: false; reason: string };

const SCRIPT = fileURLToPath(import.meta.url);

/**
 * Imports `file` in a child process; never throws. `cacheDir`: the daemon's cache of
 * transpiled `.ts` files, which the check fills for the next generation.
 */
export function checkPlugin(file: string, timeoutMs: number, strictModes: boolean, cacheDir?: string): Promise<PluginCheck> {
  return new Promise((resolve) => {
    execFile(process.execPath, [SCRIPT, file, String(timeoutMs), String(strictModes), ...(cacheDir ? [cacheDir] : [])], { timeout: timeoutMs + 5000, maxBuffer: 1024 * 1024 }, (err, stdout, stderr) => {
      const line = stdout.trim().split('\n').at(-1) ?? '';
      try {
        const result = JSON.parse(line) as PluginCheck;
        if (typeof result === 'object' && result !== null && typeof result.ok === 'boolean') return resolve(result);
      } catch {
        // below
      }
      const why = err?.killed ? `the check did not finish within ${timeoutMs + 5000} ms` : (stderr.trim().split('\n').at(-1) ?? err?.message ?? 'no result');
      resolve({ ok: false, reason: `the check of the new file failed: ${why}` });
    });
  });
}

async function run(file: string, timeoutMs: number, strictModes: boolean, cacheDir: string | undefined): Promise<void> {
  const { installPluginResolution } = await import('./plugin-resolution.js');
  const { loadPlugin } = await import('./plugin-loader.js');
  installPluginResolution(cacheDir);
  const loaded = await loadPlugin(file, { timeout: timeoutMs, strictModes });
  process.stdout.write(`${JSON.stringify(loaded.ok ? { ok: true, name: loaded.name } : { ok: false, reason: loaded.reason })}\n`);
  // The plugin may have left timers or sockets behind: its top-level code ran, nothing more is needed.
  process.exit(0);
}

if (process.argv[1] === SCRIPT) await run(process.argv[2] ?? '', Number(process.argv[3] ?? 10_000), process.argv[4] !== 'false', process.argv[5]);
