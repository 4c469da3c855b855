/**
 * The command tree of `postage` and the mapping of every outcome to an exit code
 * (cli/exit-codes.ts). Expected failures print one line on stderr without a stack trace.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { readEnv } from 'postage';
import { registerGroupCommands } from './commands/group.js';
import { registerPing } from './commands/ping.js';
import { registerPs } from './commands/ps.js';
import { registerQuit } from './commands/quit.js';
import { registerRestart } from './commands/restart.js';
import { registerRpc } from './commands/rpc.js';
import { registerSend } from './commands/send.js';
import { registerStatus } from './commands/status.js';
import { registerTopology } from './commands/topology.js';
import { CliError, EXIT_CODES_HELP, ExitCode } from './exit-codes.js';
import { stdio, type Output } from './output.js';

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The whole command tree; commander's own exits are turned into exceptions (see `main`). */
export function buildProgram(output: Output = stdio): Command {
  const program = new Command('postage')
    .description('Control CLI of Postage: send commands and RPCs to any routing key, list every daemon (ps).')
    .version(packageVersion(), '-V, --version')
    .usage('<command> [key] [args] [options]')
    .showSuggestionAfterError()
    .showHelpAfterError('(add --help for usage, examples and exit codes)')
    .configureOutput({ writeOut: (s) => output.out(s), writeErr: (s) => output.err(s) })
    .exitOverride(); // subcommands inherit these settings: they are set before .command()
  registerPs(program, output);
  registerPing(program, output);
  registerStatus(program, output);
  registerSend(program, output);
  registerRpc(program, output);
  registerRestart(program, output);
  registerQuit(program, output);
  registerGroupCommands(program, output);
  registerTopology(program, output);
  program.addHelpText('after', `\nRun "postage <command> --help" for a command's options and examples.\n\n${EXIT_CODES_HELP}`);
  return program;
}

/** Runs the CLI with `argv` (node-style: [node, script, ...args]) and returns the exit code. */
export async function run(argv: readonly string[], output: Output = stdio): Promise<number> {
  const program = buildProgram(output);
  try {
    process.exitCode = undefined;
    await program.parseAsync([...argv]);
    return typeof process.exitCode === 'number' ? process.exitCode : ExitCode.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here with exitCode 0; every parse error, and a bare
      // `postage` (help shown on stderr), is a usage error.
      return err.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
    }
    if (err instanceof CliError) {
      output.err(`postage: ${err.message}\n`);
      return err.exitCode;
    }
    // Not foreseen (a broker refusal, a bug): one line, and the stack only when debugging.
    const debug = readEnv().debug;
    const text = err instanceof Error ? (debug ? (err.stack ?? err.message) : err.message) : String(err);
    output.err(`postage: ${text}${debug ? '' : ' (POSTAGE_DEBUG_MODE=true shows the stack)'}\n`);
    return ExitCode.ERROR;
  }
}
