/** `postage join|leave <key> <group>`: commands "join_group" / "leave_group" with {group_name}. */
import type { Command } from 'commander';
import { checkName } from 'postage/internal';
import { brokerOptions, helpFooter, type BrokerOptions } from '../common.js';
import { usageError } from '../exit-codes.js';
import { fireAndForget } from '../fire-and-forget.js';
import { checkKey } from '../keys.js';
import type { Output } from '../output.js';

interface GroupVerb {
  verb: 'join' | 'leave';
  summary: string;
  effect: string;
}

const VERBS: readonly GroupVerb[] = [
  {
    verb: 'join',
    summary: 'add the applications a key reaches to a group',
    effect: 'binds N#G to its own queue (fan-out only, as in Python Postage): the key N#G then reaches it.',
  },
  {
    verb: 'leave',
    summary: 'remove the applications a key reaches from a group',
    effect: 'unbinds N#G from its own queue, and stops consuming the shared queue N#G if it joined the group at start (N#G/rr keeps serving the other members).',
  },
];

export function registerGroupCommands(program: Command, output: Output): void {
  for (const { verb, summary, effect } of VERBS) {
    const command = `${verb}_group`;
    const cmd = program
      .command(verb)
      .summary(summary)
      .description(`Sends command "${command}" with parameters {"group_name": <group>}: each application ${effect}`)
      .argument('<key>', 'routing key')
      .argument('<group>', 'group name (no "@ # / :" or spaces)');
    brokerOptions(cmd).addHelpText('after', helpFooter([`postage ${verb} rpc-echo blue`, `postage ${verb} rpc-echo:4242@web-1 blue`, 'postage ping rpc-echo#blue']));
    cmd.action(async (key: string, group: string, options: BrokerOptions) => {
      checkKey(key);
      try {
        checkName('group', group);
      } catch (err) {
        throw usageError((err as Error).message);
      }
      process.exitCode = await fireAndForget(key, command, { group_name: group }, options, output);
    });
  }
}
