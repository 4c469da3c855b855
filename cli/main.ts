/**
 * `postage`: the control CLI (SPEC §5). Runs one command and exits with a code a shell
 * script can test (cli/exit-codes.ts).
 */
import { run } from './program.js';

// A reader that stops early (`postage ps | head`) closes the pipe: stop writing, quietly.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

const code = await run(process.argv);
process.exitCode = code;
// Everything is closed by now; if a stray handle still holds the event loop, do not hang.
setTimeout(() => process.exit(code), 2000).unref();
