/** Running a command from a test: exit code, output and duration, never a throw unless asked. */
import { execFile } from 'node:child_process';
import { ROOT } from './spawn.js';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a command (never throws on a non-zero exit; `check` does). */
export function run(file: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; timeout?: number; cwd?: string } = {}): Promise<RunResult> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    execFile(
      file,
      [...args],
      { env: { ...process.env, ...options.env }, maxBuffer: 256 * 1024 * 1024, timeout: options.timeout ?? 10 * 60_000, cwd: options.cwd ?? ROOT },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
        resolve({ code, stdout, stderr: stderr || (err && code === 1 && !stderr ? err.message : ''), ms: performance.now() - t0 });
      },
    );
  });
}

/** Runs a command and throws with its output when it fails. */
export async function check(file: string, args: readonly string[], options: Parameters<typeof run>[2] = {}): Promise<RunResult> {
  const r = await run(file, args, options);
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.code}\n${r.stderr.slice(-4000)}\n${r.stdout.slice(-2000)}`);
  return r;
}

