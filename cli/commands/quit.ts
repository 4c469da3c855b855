/** `postage quit <key>`: stop applications, or whole daemons. */
import type { Command } from 'commander';
import { brokerOptions, helpFooter, type BrokerOptions } from '../common.js';
import { fireAndForget } from '../fire-and-forget.js';
import { checkKey } from '../keys.js';
import type { Output } from '../output.js';

export function registerQuit(program: Command, output: Output): void {
  const cmd = program
    .command('quit')
    .summary('stop the applications a key reaches (a daemon: all of it)')
    .description(
      'Sends command "quit". An application that receives it stops and its own queue goes; a daemon ' +
        'that receives it on its own application (its name, or P@H) stops everything and exits 0.',
    )
    .argument('<key>', 'routing key');
  brokerOptions(cmd).addHelpText('after', helpFooter(['postage quit basic-echo:4242@web-1', 'postage quit 4242@web-1', 'postage quit postaged@web-1']));
  cmd.action(async (key: string, options: BrokerOptions) => {
    checkKey(key);
    process.exitCode = await fireAndForget(key, 'quit', {}, options, output);
  });
}
