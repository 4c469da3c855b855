/**
 * Replaces the running program by a fresh copy of itself: same PID (so `P@H`, systemd's main
 * PID and a container's PID 1 stay valid), same command line, same environment, new code.
 *
 * - Node >= 22.15 has `process.execve`: used when present.
 * - Node 20 has no exec, so the native `@jcoreio/kexec` is used in its single-string form,
 *   which runs `/bin/sh -c "exec 'arg' 'arg' ..."` (the shell execs in place: the PID is
 *   kept). Its array form is not used: in kexec 4.0.0 the argument strings are freed before
 *   execvp() reads them (they live in a block-scoped std::vector), and argv arrived garbled
 *   here. Side effect of the shell: environment variables whose names are not shell
 *   identifiers (e.g. `A.B`) are dropped by dash.
 */
import { createRequire } from 'node:module';

/** The command line to exec: node, its flags, the script and its arguments. */
export function currentCommand(): string[] {
  return [process.execPath, ...process.execArgv, ...process.argv.slice(1)];
}

/** POSIX shell single-quoting: safe for any string without NUL. */
export function shellQuote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** The `/bin/sh -c` script kexec runs on Node 20. */
export function execScript(command: readonly string[]): string {
  return `exec ${command.map(shellQuote).join(' ')}`;
}

type ExecVe = (file: string, args: string[], env: NodeJS.ProcessEnv) => never;

/** Which mechanism `reExec` will use here. */
export function execMechanism(): 'process.execve' | 'kexec' {
  return typeof (process as unknown as { execve?: unknown }).execve === 'function' ? 'process.execve' : 'kexec';
}

/**
 * Why restarting in place cannot work here, if it cannot: checked at start, so that a
 * missing native build (kexec needs make and g++ at install) is found then, not at the first
 * restart. Loads the native module; it does nothing until called.
 */
export function checkExecMechanism(): string | undefined {
  if (execMechanism() === 'process.execve') return undefined;
  try {
    const kexec = createRequire(import.meta.url)('@jcoreio/kexec') as unknown;
    return typeof kexec === 'function' ? undefined : '@jcoreio/kexec did not load as a function';
  } catch (err) {
    return `@jcoreio/kexec cannot be loaded (${(err as Error).message.split('\n')[0]}); reinstall it with its native build (npm rebuild @jcoreio/kexec, needs make and g++), or run on Node >= 22.15 (process.execve)`;
  }
}

/**
 * Execs `command` (default: the current command line) in place. Returns only if the exec
 * failed, by throwing. The caller has already closed everything that must be closed.
 */
export function reExec(command: readonly string[] = currentCommand()): never {
  const execve = (process as unknown as { execve?: ExecVe }).execve;
  const [file, ...rest] = command;
  if (!file) throw new Error('re-exec: empty command');
  // execve keeps argv[0] as it was (e.g. `node` from a shebang); the shell form names the binary.
  if (typeof execve === 'function') return execve.call(process, file, [process.argv0 || file, ...rest], process.env);
  // kexec is CommonJS and native: loaded only when needed.
  const kexec = createRequire(import.meta.url)('@jcoreio/kexec') as (command: string) => void;
  kexec(execScript(command));
  throw new Error('re-exec: kexec returned without replacing the process');
}
