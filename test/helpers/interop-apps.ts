/** The TypeScript applications the interop suite runs in-process, and where plugins come from. */
import fs from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { GenericApplication, MessageHandler, MessageResultError, RpcHandler, type Connection, type Encoder } from 'postage';
import { startProcessor } from './apps.js';
import { FIXTURES, ROOT, tempDir } from './spawn.js';

/**
 * RPC `echo` (the parameters as they are), `fail` (throws RangeError), `error` (an error
 * result); command `echo` is recorded in `echoes`.
 */
export class TsEcho extends GenericApplication {
  static handlers = {
    echo: RpcHandler('command', 'echo'),
    fail: RpcHandler('command', 'fail'),
    error: RpcHandler('command', 'error'),
    onEcho: MessageHandler('command', 'echo'),
  };

  readonly echoes: unknown[] = [];

  echo(content: { parameters?: unknown }): unknown {
    return content.parameters;
  }

  fail(content: { parameters?: unknown }): never {
    throw new RangeError(String(content.parameters));
  }

  error(content: { parameters?: unknown }): MessageResultError {
    return new MessageResultError(String(content.parameters));
  }

  onEcho(content: { parameters?: unknown }): void {
    this.echoes.push(content.parameters);
  }
}

/** Starts a TsEcho named `name` on `connection`; closed at teardown. */
export function startTsEcho(t: ExecutionContext, connection: Connection, name: string, options: { host?: string; encoder?: Encoder; groups?: string[] } = {}): Promise<TsEcho> {
  return startProcessor(t, new TsEcho({ name, connection, ...options }));
}

/**
 * A plugin folder (under the OS temp dir) with `test/fixtures/plugins/<fixture>` copied under
 * each of `names` (`relay-a.mjs`, …; a plugin without `static appName` is named after its file),
 * plus `extra` files given relative to the project (e.g. `plugins/rpc-echo.ts`).
 */
export function pluginCopies(t: ExecutionContext, fixture: string, names: readonly string[], extra: readonly string[] = []): string {
  const dir = path.join(tempDir(t, 'postaged-interop-'), 'plugins');
  fs.mkdirSync(dir);
  const ext = path.extname(fixture);
  for (const n of names) fs.copyFileSync(path.join(FIXTURES, fixture), path.join(dir, `${n}${ext}`));
  for (const f of extra) fs.copyFileSync(path.join(ROOT, f), path.join(dir, path.basename(f)));
  return dir;
}
