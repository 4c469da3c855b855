/** `postage leave <key> <group>`: command "leave_group" with {group_name}. */
import type { Command } from 'commander';
import { checkName } from 'postage';
import { brokerOptions, helpFooter, type BrokerOptions } from '../common.js';
import { usageError } from '../exit-codes.js';
import { fireAndForget } from '../fire-and-forget.js';
import { checkKey } from '../keys.js';
import type { Output } from '../output.js';

export function registerLeave(program: Command, output: Output): void {
  const cmd = program
    .command('leave')
    .summary('remove the applications a key reaches from a group')
    .description('Sends command "leave_group" with parameters {"group_name": <group>}: each application ' + 'unbinds N#G (and N#G/rr when the group was joined at start) from its own queue.')
    .argument('<key>', 'routing key')
    .argument('<group>', 'group name (no "@ # / :" or spaces)');
  brokerOptions(cmd).addHelpText('after', helpFooter(['postage leave rpc-echo blue', 'postage leave rpc-echo:4242@web-1 blue', 'postage ping rpc-echo#blue']));
  cmd.action(async (key: string, group: string, options: BrokerOptions) => {
    checkKey(key);
    try {
      checkName('group', group);
    } catch (err) {
      throw usageError((err as Error).message);
    }
    process.exitCode = await fireAndForget(key, 'leave_group', { group_name: group }, options, output);
  });
}
