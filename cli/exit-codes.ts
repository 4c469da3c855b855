/**
 * Exit codes of `postage`, for shell scripts. They follow sysexits(3) where one fits
 * (64-78); 1-3 are this tool's own. Documented in every `--help` and in docs/cli.md.
 */
export const ExitCode = {
  /** Every reply was a success (or the command was handed to the broker). */
  OK: 0,
  /** A reply was an error or an exception, or something unexpected failed. */
  ERROR: 1,
  /** Bad command line: unknown option, bad key, invalid JSON parameters. */
  USAGE: 2,
  /** Nobody answered within the timeout (fewer replies than `--expect`), or no queue is bound to the key. */
  NO_REPLY: 3,
  /** The broker could not be reached (sysexits EX_UNAVAILABLE). */
  UNAVAILABLE: 69,
  /** The `--config` file is missing or invalid (sysexits EX_CONFIG, as `postaged`). */
  CONFIG: 78,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** The exit-code table printed at the end of every `--help`. */
export const EXIT_CODES_HELP = `Exit codes:
  0   success: every reply was a success, or the broker accepted the message
  1   a reply was an error or an exception (or an unexpected failure)
  2   usage: bad option, key or JSON parameters
  3   no reply within the timeout (or fewer than --expect); for fire-and-forget
      commands: no queue is bound to the key, so nobody would receive it
  69  broker unreachable (the URL tried is printed, without its password)
  78  the --config file is missing or invalid`;

/**
 * An expected failure: printed as one line on stderr (no stack trace) and turned into
 * the exit code. Anything else thrown is a bug and is reported with its stack.
 */
export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCodeValue,
    message: string,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** A bad command line (exit 2). */
export function usageError(message: string): CliError {
  return new CliError(ExitCode.USAGE, message);
}
