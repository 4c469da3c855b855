/** `postage rpc <key> <name> [json]`: call any RPC handler and print the answers. */
import type { Command } from 'commander';
import { brokerOptions, helpFooter, replyOptions, repliesExitCode, withSession, type ReplyOptions } from '../common.js';
import { checkBodySize, readParameters } from '../json-input.js';
import { checkKey } from '../keys.js';
import { json, replyJson, responder, safe, showValue, type Output } from '../output.js';

export function registerRpc(program: Command, output: Output): void {
  const cmd = program
    .command('rpc')
    .summary('call an RPC handler and print the replies')
    .description(
      'Sends RpcCommand <name> with JSON parameters (default {}) to the key and prints every reply. ' +
        'Parameters: JSON text, "@file" to read a file, or "-" to read stdin. A round-robin or ' +
        'instance key returns at the first reply and prints its value as it is (a string bare, ' +
        'anything else as JSON); a fan-out key collects replies until the timeout and prints ' +
        'one "name:pid@host: value" line per reply. Error and exception replies go to stderr (exit 1).',
    )
    .argument('<key>', 'routing key')
    .argument('<name>', 'RPC command name (the handler\'s name)')
    .argument('[json]', 'parameters: JSON, @file or - (stdin)');
  replyOptions(brokerOptions(cmd), 5).addHelpText(
    'after',
    helpFooter([
      `postage rpc rpc-echo/rr echo '"hello"'`,
      `postage rpc rpc-echo echo '{"text": "hi"}' --expect 2`,
      'postage rpc rpc-echo:4242@web-1 echo @params.json',
      `echo '"from stdin"' | postage rpc rpc-echo/rr echo -`,
    ]),
  );
  cmd.action(async (key: string, name: string, text: string | undefined, options: ReplyOptions) => {
    const reach = checkKey(key);
    const parameters = await readParameters(text);
    checkBodySize(name, parameters);
    const expect = options.expect ?? (reach === 'single' ? 1 : undefined);
    process.exitCode = await withSession(options, async (session) => {
      const replies = await session.collect(key, name, parameters, { timeout: options.timeout, ...(expect === undefined ? {} : { expect }) });
      const ok = replies.filter((r) => r.ok);
      if (options.json) output.out(json(replies.map(replyJson)));
      // A single-consumer key prints the bare value; a fan-out key names each responder, however many answered.
      else if (reach === 'single') for (const r of ok) output.out(`${showValue(r.value)}\n`);
      else for (const r of [...ok].sort((a, b) => responder(a).localeCompare(responder(b)))) output.out(`${responder(r)}: ${typeof r.value === 'string' ? safe(r.value) : JSON.stringify(r.value)}\n`);
      return repliesExitCode(replies, `'${name}' on key '${key}'`, options, output);
    });
  });
}
