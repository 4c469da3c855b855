/** `postage send <key> <name> [json]`: a fire-and-forget command to any key. */
import type { Command } from 'commander';
import { brokerOptions, helpFooter, type BrokerOptions } from '../common.js';
import { fireAndForget } from '../fire-and-forget.js';
import { checkBodySize, readParameters } from '../json-input.js';
import { checkKey } from '../keys.js';
import type { Output } from '../output.js';

export function registerSend(program: Command, output: Output): void {
  const cmd = program
    .command('send')
    .summary('send a fire-and-forget command')
    .description(
      'Publishes MessageCommand <name> with JSON parameters (default {}) to the key and returns ' +
        'once the broker has it. Parameters: JSON text, "@file" to read a file, or "-" for stdin. ' +
        'Exit 3 when no queue is bound to the key (nobody would receive the command).',
    )
    .argument('<key>', 'routing key')
    .argument('<name>', 'command name')
    .argument('[json]', 'parameters: JSON, @file or - (stdin)');
  brokerOptions(cmd).addHelpText(
    'after',
    helpFooter([`postage send basic-echo echo '"hello"'`, `postage send basic-echo/rr echo '{"n": 1}'`, 'postage send basic-echo@web-1 echo @message.json', 'cat params.json | postage send basic-echo echo -']),
  );
  cmd.action(async (key: string, name: string, text: string | undefined, options: BrokerOptions) => {
    checkKey(key);
    const parameters = await readParameters(text);
    checkBodySize(name, parameters);
    process.exitCode = await fireAndForget(key, name, parameters, options, output);
  });
}
