/** `postage join <key> <group>`: command "join_group" with {group_name}. */
import type { Command } from 'commander';
import { checkName } from 'postage';
import { brokerOptions, helpFooter, type BrokerOptions } from '../common.js';
import { usageError } from '../exit-codes.js';
import { fireAndForget } from '../fire-and-forget.js';
import { checkKey } from '../keys.js';
import type { Output } from '../output.js';

export function registerJoin(program: Command, output: Output): void {
  const cmd = program
    .command('join')
    .summary('add the applications a key reaches to a group')
    .description('Sends command "join_group" with parameters {"group_name": <group>}: each application ' + 'binds N#G to its own queue (fan-out only, as in Python Postage): the key N#G then reaches it.')
    .argument('<key>', 'routing key')
    .argument('<group>', 'group name (no "@ # / :" or spaces)');
  brokerOptions(cmd).addHelpText('after', helpFooter(['postage join rpc-echo blue', 'postage join rpc-echo:4242@web-1 blue', 'postage ping rpc-echo#blue']));
  cmd.action(async (key: string, group: string, options: BrokerOptions) => {
    checkKey(key);
    try {
      checkName('group', group);
    } catch (err) {
      throw usageError((err as Error).message);
    }
    process.exitCode = await fireAndForget(key, 'join_group', { group_name: group }, options, output);
  });
}
