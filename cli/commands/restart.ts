/** `postage restart <key>`: restart the daemons that host the applications a key reaches. */
import type { Command } from 'commander';
import { brokerOptions, helpFooter, type BrokerOptions } from '../common.js';
import { fireAndForget } from '../fire-and-forget.js';
import { checkKey } from '../keys.js';
import type { Output } from '../output.js';

export function registerRestart(program: Command, output: Output): void {
  const cmd = program
    .command('restart')
    .summary('restart in place (same PID) the daemons a key reaches')
    .description(
      'Sends command "restart". A postaged daemon that receives it through any of its applications ' +
        'drains, acks, and re-execs itself in place (same PID, new code), once however many of its ' +
        'queues the command reached. Check the result with "postage ps" (RESTARTS).',
    )
    .argument('<key>', 'routing key');
  brokerOptions(cmd).addHelpText('after', helpFooter(['postage restart 4242@web-1', 'postage restart postaged', 'postage restart rpc-echo@web-1']));
  cmd.action(async (key: string, options: BrokerOptions) => {
    checkKey(key);
    process.exitCode = await fireAndForget(key, 'restart', {}, options, output);
  });
}
