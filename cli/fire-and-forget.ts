/**
 * The commands that expect no answer (`send`, `restart`, `quit`, `join`, `leave`): publish
 * once, wait for the broker's confirm, and report whether any queue was bound to the key.
 */
import { withSession, type BrokerOptions } from './common.js';
import { ExitCode, type ExitCodeValue } from './exit-codes.js';
import { GenericApplicationExchange } from 'postage';
import { json, type Output } from './output.js';

export async function fireAndForget(key: string, name: string, parameters: unknown, options: BrokerOptions, output: Output): Promise<ExitCodeValue> {
  return withSession(options, async (session) => {
    const routed = await session.command(key, name, parameters);
    if (options.json) output.out(json({ key, command: name, parameters, routed }));
    else if (routed) output.out(`sent ${name} to ${key}\n`);
    if (routed) return ExitCode.OK;
    output.err(`postage: no queue is bound to key '${key}' on ${GenericApplicationExchange.name}: nobody received '${name}'\n`);
    return ExitCode.NO_REPLY;
  });
}
