/** `postage status [key]`: the full status of the daemons a key reaches. */
import type { Command } from 'commander';
import { DAEMON_DISCOVERY_KEY, type MessageResult } from 'postage';
import { brokerOptions, helpFooter, replyOptions, repliesExitCode, withSession, type ReplyOptions } from '../common.js';
import { ExitCode, type ExitCodeValue } from '../exit-codes.js';
import type { Session } from '../session.js';
import { asDaemonStatus, statusBlock } from '../daemon-status.js';
import { checkKey } from '../keys.js';
import { json, replyJson, responder, showValue, type Output } from '../output.js';

export function registerStatus(program: Command, output: Output): void {
  const cmd = program
    .command('status')
    .summary("show a daemon's process, applications, counts and queues")
    .description(
      'Sends RPC "status" to the key. Daemons (postaged) answer with their process and every ' +
        'application they run. On a fan-out key (P@H, @H, N) the "unknown command" answers of ' +
        'plain applications are left out. When only applications that are not daemons are ' +
        'reached (a plain application, or a Python Postage one, which answers ping but not ' +
        `status), it says so and exits 1. Without a key, asks every daemon (${DAEMON_DISCOVERY_KEY}).`,
    )
    .argument('[key]', 'routing key (a daemon: its name, P@H, N:P@H, @H)', DAEMON_DISCOVERY_KEY);
  replyOptions(brokerOptions(cmd), 2).addHelpText(
    'after',
    helpFooter(['postage status', 'postage status postaged@web-1', 'postage status 4242@web-1 --json']),
  );
  cmd.action(async (key: string, options: ReplyOptions) => {
    const reach = checkKey(key);
    const expect = options.expect ?? (reach === 'single' ? 1 : undefined);
    process.exitCode = await withSession(options, async (session) => {
      const all = await session.collect(key, 'status', {}, { timeout: options.timeout, ...(expect === undefined ? {} : { expect }) });
      // A fan-out key such as P@H or @H also reaches plain applications, which have no
      // "status" handler: their "unknown command" answers are not daemons' failures.
      const replies = all.filter((r) => r.ok || r.code !== 'POSTAGE_ERR_UNKNOWN_COMMAND');
      if (replies.length === 0) return notADaemon(session, key, all, options, output);
      if (options.json) output.out(json(replies.map(replyJson)));
      else {
        const blocks = replies
          .filter((r) => r.ok)
          .map((r) => {
            const d = asDaemonStatus(r.value);
            return d ? statusBlock(d) : `${responder(r)}:\n${showValue(r.value)}\n`;
          });
        output.out(blocks.join('\n'));
      }
      return repliesExitCode(replies, `'status' on key '${key}'`, options, output);
    });
  });
}

/**
 * Nobody answered `status` as a daemon: either applications said they have no such command
 * (TypeScript ones), or nobody answered at all, which is what a Python Postage application
 * does with an unknown RPC. A `ping` tells an application that is not a daemon (exit 1)
 * from nobody at all (exit 3).
 */
async function notADaemon(session: Session, key: string, unknown: readonly MessageResult[], options: ReplyOptions, output: Output): Promise<ExitCodeValue> {
  // Applications that said they have no status command name themselves; a Python one is silent.
  const pinged = unknown.length > 0 ? [] : await session.collect(key, 'ping', {}, { timeout: options.timeout, expect: 1 });
  if (unknown.length === 0 && pinged.length === 0) {
    output.err(`postage: no reply to 'status' on key '${key}' within ${options.timeout} s\n`);
    return ExitCode.NO_REPLY;
  }
  const who = unknown.length > 0 ? unknown.map(responder).join(', ') : `key '${key}' reaches an application that answers ping but not status`;
  output.err(`postage: ${who}: no status command: not a postaged daemon (a plain application, or a Python Postage one); try "postage ping ${key}"\n`);
  return ExitCode.ERROR;
}
