/** `postage ping [key]`: who is there, by fingerprint. */
import type { Command } from 'commander';
import { DAEMON_DISCOVERY_KEY } from 'postage';
import { brokerOptions, helpFooter, replyOptions, repliesExitCode, withSession, type ReplyOptions } from '../common.js';
import { checkKey } from '../keys.js';
import { json, replyJson, table, type Output } from '../output.js';

export function registerPing(program: Command, output: Output): void {
  const cmd = program
    .command('ping')
    .summary('ask every application on a key for its fingerprint')
    .description(
      'Sends RPC "ping" to the key and prints every fingerprint that comes back within the timeout. ' +
        'A round-robin or instance key returns at the first reply; a fan-out key waits the whole ' +
        `timeout unless --expect is given. Without a key, pings every daemon (${DAEMON_DISCOVERY_KEY}).`,
    )
    .argument('[key]', 'routing key', DAEMON_DISCOVERY_KEY);
  replyOptions(brokerOptions(cmd), 2).addHelpText(
    'after',
    helpFooter(['postage ping', 'postage ping rpc-echo', 'postage ping @web-1 --timeout 5', 'postage ping rpc-echo/rr', 'postage ping basic-echo --expect 3 --json']),
  );
  cmd.action(async (key: string, options: ReplyOptions) => {
    const reach = checkKey(key);
    const expect = options.expect ?? (reach === 'single' ? 1 : undefined);
    process.exitCode = await withSession(options, async (session) => {
      const replies = await session.collect(key, 'ping', {}, { timeout: options.timeout, ...(expect === undefined ? {} : { expect }) });
      if (options.json) output.out(json(replies.map(replyJson)));
      else if (replies.some((r) => r.ok)) output.out(pingTable(replies.filter((r) => r.ok).map((r) => r.value)));
      return repliesExitCode(replies, `ping on key '${key}'`, options, output);
    });
  });
}

function pingTable(fingerprints: readonly unknown[]): string {
  const rows = fingerprints
    .map((v) => {
      const f = (v ?? {}) as Record<string, unknown>;
      return ['name', 'pid', 'host', 'type', 'user', 'vhost'].map((k) => String(f[k] ?? '-'));
    })
    .sort((a, b) => (a[2] ?? '').localeCompare(b[2] ?? '') || (a[0] ?? '').localeCompare(b[0] ?? '') || Number(a[1]) - Number(b[1]));
  return table([{ header: 'NAME' }, { header: 'PID', align: 'right' }, { header: 'HOST' }, { header: 'TYPE' }, { header: 'USER' }, { header: 'VHOST' }], rows);
}
