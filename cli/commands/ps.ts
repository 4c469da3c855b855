/** `postage ps`: every daemon and application on the vhost, in one table. */
import { Option, type Command } from 'commander';
import { DAEMON_DISCOVERY_KEY, type MessageResult } from 'postage';
import { brokerOptions, helpFooter, positiveInteger, positiveSeconds, replyOptions, repliesExitCode, withSession, type ReplyOptions } from '../common.js';
import { asDaemonStatus, otherApplications, psTable, sortDaemons, type DaemonStatus, type OtherApplication } from '../daemon-status.js';
import type { Session } from '../session.js';
import { ExitCode } from '../exit-codes.js';
import { json, type Output } from '../output.js';

interface PsOptions extends ReplyOptions {
  watch?: boolean;
  interval: number;
  count?: number;
}

export function registerPs(program: Command, output: Output): void {
  const cmd = program
    .command('ps')
    .summary('list every daemon and application on the vhost')
    .description(
      `Asks every postaged daemon (key ${DAEMON_DISCOVERY_KEY}) for its status and prints one table: host, pid, ` +
        'daemon name, uptime, restarts, CPU, RSS, then each application with its state and message ' +
        'counts. Replies are collected for --timeout seconds (or until --expect daemons answered). ' +
        'Then every daemon host is pinged (@H, another --timeout) and the applications there that ' +
        'are no daemon\'s (a plain or Python Postage application) are listed as "not a postaged daemon" ' +
        '(not in --json, which lists daemons only). ' +
        'With --watch the table is refreshed in place every --interval seconds, until Ctrl-C or --count.',
    );
  replyOptions(brokerOptions(cmd), 2)
    .option('-w, --watch', 'refresh in place until Ctrl-C (or --count)')
    .addOption(new Option('-i, --interval <seconds>', 'pause between refreshes').argParser(positiveSeconds).default(2))
    .addOption(new Option('-n, --count <n>', 'stop after n refreshes (implies --watch)').argParser(positiveInteger))
    .addHelpText('after', helpFooter(['postage ps', 'postage ps --expect 2', 'postage ps --json | jq ".[].applications[].state"', 'postage ps --watch --interval 5'], false));
  cmd.action(async (options: PsOptions) => {
    const watch = options.watch === true || options.count !== undefined;
    process.exitCode = await withSession(options, async (session) => {
      const stop = stopper(watch);
      try {
        let replies: MessageResult[] = [];
        for (let frame = 1; ; frame++) {
          replies = await session.collect(DAEMON_DISCOVERY_KEY, 'status', {}, { timeout: options.timeout, ...(options.expect === undefined ? {} : { expect: options.expect }) });
          const daemons = replies.flatMap((r) => (r.ok ? [asDaemonStatus(r.value)].filter((d): d is DaemonStatus => d !== undefined) : []));
          const others = options.json ? [] : await othersOnHosts(session, daemons, options.timeout);
          output.out(render(daemons, others, options, watch));
          if (!watch || stop.requested || frame === options.count) break;
          await stop.sleep(options.interval * 1000);
          if (stop.requested) break;
        }
        if (watch) return ExitCode.OK;
        if (replies.length === 0) {
          output.err(`postage: no daemon answered within ${options.timeout} s\n`);
          return ExitCode.NO_REPLY;
        }
        return repliesExitCode(replies, `'status' on key '${DAEMON_DISCOVERY_KEY}'`, options, output);
      } finally {
        stop.dispose();
      }
    });
  });
}

/** Pings `@H` on every daemon's host, for the applications there that are no daemon's. */
async function othersOnHosts(session: Session, daemons: readonly DaemonStatus[], timeout: number): Promise<OtherApplication[]> {
  const hosts = [...new Set(daemons.map((d) => d.host))];
  const pings = await Promise.all(hosts.map((h) => session.collect(`@${h}`, 'ping', {}, { timeout })));
  return otherApplications(daemons, pings.flat().filter((r) => r.ok).map((r) => r.value));
}

function render(daemons: DaemonStatus[], others: OtherApplication[], options: PsOptions, watch: boolean): string {
  // In watch mode --json prints one line per refresh (NDJSON), so a script can read them as they come.
  if (options.json) return watch ? `${JSON.stringify(sortDaemons(daemons))}\n` : json(sortDaemons(daemons));
  if (!watch) return daemons.length > 0 ? psTable(daemons, others) : ''; // "nobody answered" goes to stderr
  const body = daemons.length > 0 ? psTable(daemons, others) : `no daemon answered within ${options.timeout} s\n`;
  const header = `postage ps, every ${options.interval} s, ${new Date().toISOString()} (Ctrl-C to stop)\n\n`;
  // On a terminal, redraw in place (cursor home, clear screen); in a pipe, append frames.
  return process.stdout.isTTY ? `\x1b[H\x1b[2J${header}${body}` : `${header}${body}\n`;
}

/** In watch mode the first Ctrl-C ends the loop after the current frame; a second one exits at once. */
function stopper(active: boolean): { requested: boolean; sleep(ms: number): Promise<void>; dispose(): void } {
  let wake: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  const state = {
    requested: false,
    sleep(ms: number): Promise<void> {
      return new Promise<void>((resolve) => {
        wake = resolve;
        timer = setTimeout(resolve, ms);
      });
    },
    dispose(): void {
      clearTimeout(timer);
      if (active) process.removeListener('SIGINT', onSigint);
    },
  };
  const onSigint = (): void => {
    if (state.requested) process.exit(130);
    state.requested = true;
    clearTimeout(timer);
    wake?.();
  };
  if (active) process.on('SIGINT', onSigint);
  return state;
}
