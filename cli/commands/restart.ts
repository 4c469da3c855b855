/** `postage restart <key>`: restart the daemons that host the applications a key reaches. */
import { Option, type Command } from 'commander';
import { brokerOptions, helpFooter, positiveInteger, positiveSeconds, withSession, type BrokerOptions } from '../common.js';
import { usageError } from '../exit-codes.js';
import { fireAndForget } from '../fire-and-forget.js';
import { checkKey } from '../keys.js';
import type { Output } from '../output.js';
import { rollingRestart } from '../rolling-restart.js';

interface RestartOptions extends BrokerOptions {
  rolling?: boolean;
  maxUnavailable: number;
  timeout: number;
  expect?: number;
}

/** Seconds discovery collects `ping` and `status` answers (unless --expect is reached first). */
const DISCOVER_SECONDS = 2;

export function registerRestart(program: Command, output: Output): void {
  const cmd = program
    .command('restart')
    .summary('restart in place (same PID) the daemons a key reaches, all at once or --rolling')
    .description(
      'Sends command "restart". A postaged daemon that receives it through any of its applications ' +
        'drains, acks, and re-execs itself in place (same PID, new code), once however many of its ' +
        'queues the command reached. Check the result with "postage ps" (RESTARTS).\n\n' +
        `With --rolling, the daemons the key reaches (found with a ping, ${DISCOVER_SECONDS} s) are restarted ` +
        'one at a time (or --max-unavailable at a time), each through its own instance key N:P@H; the ' +
        'next one starts only once the previous answers again from a new generation. The first that ' +
        'does not within --timeout stops the roll (exit 3); every step is reported.',
    )
    .argument('<key>', 'routing key')
    .option('--rolling', 'one daemon at a time, waiting for each to come back')
    .addOption(new Option('--max-unavailable <n>', 'with --rolling: daemons restarted at the same time').argParser(positiveInteger).default(1))
    .addOption(new Option('-t, --timeout <seconds>', 'with --rolling: how long each daemon has to come back').argParser(positiveSeconds).default(60))
    .addOption(new Option('-e, --expect <n>', 'with --rolling: daemons expected; fewer answering is exit 3, before anything is restarted').argParser(positiveInteger));
  brokerOptions(cmd).addHelpText(
    'after',
    helpFooter(['postage restart 4242@web-1', 'postage restart postaged', 'postage restart rpc-echo@web-1', 'postage restart postaged --rolling --expect 3', 'postage restart rpc-echo --rolling --max-unavailable 2 --timeout 120']),
  );
  cmd.action(async (key: string, options: RestartOptions) => {
    const reach = checkKey(key);
    if (!options.rolling) {
      const rollingOnly = ['maxUnavailable', 'timeout', 'expect'].filter((o) => cmd.getOptionValueSource(o) === 'cli');
      if (rollingOnly.length > 0) throw usageError(`--max-unavailable, --timeout and --expect go with --rolling`);
      process.exitCode = await fireAndForget(key, 'restart', {}, options, output);
      return;
    }
    if (reach === 'single' && key.endsWith('/rr')) throw usageError(`--rolling needs a key that reaches every instance (N, N@H, N#G, @H), not the round-robin ${key}`);
    process.exitCode = await withSession(options, (session) =>
      rollingRestart(
        session,
        key,
        { timeout: options.timeout, maxUnavailable: options.maxUnavailable, discover: DISCOVER_SECONDS, json: options.json ?? false, ...(options.expect === undefined ? {} : { expect: options.expect }) },
        output,
      ),
    );
  });
}
