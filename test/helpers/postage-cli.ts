/** Runs the built `./bin/postage` against a vhost, with nothing of the test's own POSTAGE_* environment. */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { ROOT } from './spawn.js';

export const POSTAGE_CLI = path.join(ROOT, 'bin', 'postage');

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export function postage(url: string, args: readonly string[], options: { input?: string; env?: Record<string, string> } = {}): Promise<CliRun> {
  const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('POSTAGE_'))), POSTAGE_URL: url, ...options.env };
  const started = Date.now();
  return new Promise((resolve) => {
    const child = execFile(POSTAGE_CLI, [...args], { env, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr, ms: Date.now() - started });
    });
    child.stdin?.end(options.input ?? '');
  });
}
