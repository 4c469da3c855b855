/**
 * `postage topology check|migrate <queue>... --mode <durable|postage>`: whether queues have
 * the flags a topology mode declares, and moving them to it. A queue declared with other
 * flags than an application declares is refused by the broker (406): the durable queue a
 * daemon left behind blocks a Python Postage application of that name for 7 days, and a
 * vhost switched from one mode to the other refuses every queue it already has.
 */
import { Option, type Command } from 'commander';
import { PostageError, type TopologyOptions } from 'postage';
import { describeFlags, explainDeclareError, normalizeQueue, queueRole } from 'postage/internal';
import { brokerOptions, helpFooter, positiveInteger, withSession, type BrokerOptions } from '../common.js';
import { ExitCode, usageError, type ExitCodeValue } from '../exit-codes.js';
import { json, type Output } from '../output.js';
import type { Session } from '../session.js';

interface TopologyCommandOptions extends BrokerOptions {
  mode: 'durable' | 'postage';
  sharedQueueExpires?: number;
  uniqueQueueExpires?: number;
  quorum?: boolean;
  force?: boolean;
}

/** What a queue is compared with its mode. */
interface Finding {
  queue: string;
  state: 'absent' | 'matches' | 'differs' | 'migrated' | 'refused';
  detail: string;
}

function topologyOf(options: TopologyCommandOptions): TopologyOptions {
  return {
    mode: options.mode,
    ...(options.sharedQueueExpires !== undefined ? { sharedQueueExpires: options.sharedQueueExpires } : {}),
    ...(options.uniqueQueueExpires !== undefined ? { uniqueQueueExpires: options.uniqueQueueExpires } : {}),
    ...(options.quorum !== undefined ? { quorum: options.quorum } : {}),
  };
}

/** The flags each queue gets in the mode; a name that is no Postage queue is a usage error. */
function expected(queues: readonly string[], topology: TopologyOptions): Array<{ queue: string; options: ReturnType<typeof normalizeQueue>['options'] }> {
  return queues.map((queue) => {
    const role = queueRole(queue, topology);
    if (!role) throw usageError(`not a queue of the addressing model in mode ${topology.mode}: ${JSON.stringify(queue)} (N, N@H, N#G, N:P@H, postage.dead-letter.N${topology.mode === 'postage' ? ', P@H' : ''})`);
    return { queue, options: normalizeQueue(role.flags ? { name: queue, flags: role.flags } : queue).options };
  });
}

/**
 * Compares one queue with its flags: absent (a passive declare fails), matches (declaring it
 * with those flags is accepted: a no-op on an existing queue), or differs (406).
 */
async function inspect(session: Session, queue: string, options: ReturnType<typeof normalizeQueue>['options']): Promise<Finding> {
  const exists = await session.connection.withChannel((ch) => ch.checkQueue(queue)).then(
    () => true,
    (err: unknown) => {
      if ((err as { code?: number }).code === 404) return false;
      throw err;
    },
  );
  if (!exists) return { queue, state: 'absent', detail: `absent (the next application to start declares it ${describeFlags(options)})` };
  try {
    await session.connection.withChannel((ch) => ch.assertQueue(queue, options));
    return { queue, state: 'matches', detail: `matches (${describeFlags(options)})` };
  } catch (err) {
    const explained = explainDeclareError(err, queue, options);
    if (explained instanceof PostageError && explained.code === 'POSTAGE_ERR_TOPOLOGY') return { queue, state: 'differs', detail: `differs: ${explained.message}` };
    throw explained;
  }
}

/** Deletes a queue that differs (only if empty and unused, unless forced), then declares it with the mode's flags. */
async function migrate(session: Session, finding: Finding, options: ReturnType<typeof normalizeQueue>['options'], force: boolean): Promise<Finding> {
  if (finding.state !== 'differs') return finding;
  const { queue } = finding;
  try {
    await session.connection.withChannel((ch) => ch.deleteQueue(queue, force ? {} : { ifUnused: true, ifEmpty: true }));
  } catch (err) {
    const code = (err as { code?: number }).code;
    const why = code === 406 ? 'it holds messages or has consumers: stop what uses it and drain it, or add --force (its messages are lost)' : (err as Error).message;
    return { queue, state: 'refused', detail: `not migrated: ${why}` };
  }
  await session.connection.withChannel((ch) => ch.assertQueue(queue, options));
  return { queue, state: 'migrated', detail: `migrated: deleted, and declared ${describeFlags(options)}` };
}

export function registerTopology(program: Command, output: Output): void {
  const topology = program
    .command('topology')
    .summary('check queues against a topology mode, or move them to it')
    .description(
      'A queue declared with other flags than an application declares is refused by the broker (406 ' +
        'PRECONDITION_FAILED). "check" tells, for each queue named, whether it matches the flags of ' +
        '--mode (durable: durable, expiring, dead-lettered; postage: Python Postage 1.2.1\'s, not ' +
        'durable, auto-delete); "migrate" deletes each queue that differs (only when it is empty and ' +
        'unused, unless --force) and declares it with those flags. Queue names: N, N@H, N#G, N:P@H, ' +
        'postage.dead-letter.N, and P@H in the postage mode.',
    );
  for (const verb of ['check', 'migrate'] as const) {
    const cmd = topology
      .command(verb)
      .summary(verb === 'check' ? 'tell whether queues have the flags of a mode (exit 1 when one differs)' : 'move queues to the flags of a mode')
      .argument('<queue...>', 'queue names')
      .addOption(new Option('--mode <mode>', 'topology mode to compare with').choices(['durable', 'postage']).makeOptionMandatory())
      .addOption(new Option('--shared-queue-expires <ms>', 'x-expires of shared queues, if not the default (7 days)').argParser(positiveInteger))
      .addOption(new Option('--unique-queue-expires <ms>', "x-expires of an instance's own queue, if not the default (60 s)").argParser(positiveInteger))
      .option('--quorum', 'the queues are quorum queues (topology.quorum)');
    if (verb === 'migrate') cmd.option('--force', 'delete a queue that differs even when it holds messages or has consumers (its messages are lost)');
    brokerOptions(cmd).addHelpText(
      'after',
      helpFooter(
        verb === 'check'
          ? ['postage topology check rpc-echo rpc-echo@web-1 --mode postage', 'postage topology check postaged --mode durable --json']
          : ['postage topology migrate rpc-echo rpc-echo@web-1 --mode postage', 'postage topology migrate postaged postaged@web-1 --mode postage --force'],
        false,
      ),
    );
    cmd.action(async (queues: string[], options: TopologyCommandOptions) => {
      const wanted = expected(queues, topologyOf(options));
      process.exitCode = await withSession(options, async (session) => {
        const findings: Finding[] = [];
        for (const { queue, options: flags } of wanted) {
          const found = await inspect(session, queue, flags);
          findings.push(verb === 'migrate' ? await migrate(session, found, flags, options.force === true) : found);
        }
        return report(findings, verb, options, output);
      });
    });
  }
}

function report(findings: readonly Finding[], verb: 'check' | 'migrate', options: TopologyCommandOptions, output: Output): ExitCodeValue {
  if (options.json) output.out(json(findings));
  else for (const f of findings) output.out(`${f.queue}: ${f.detail}\n`);
  const failed = findings.filter((f) => f.state === (verb === 'check' ? 'differs' : 'refused'));
  if (failed.length === 0) return ExitCode.OK;
  output.err(
    verb === 'check'
      ? `postage: ${failed.length} queue(s) differ from mode ${options.mode}: postage topology migrate ${failed.map((f) => `'${f.queue}'`).join(' ')} --mode ${options.mode}\n`
      : `postage: ${failed.length} queue(s) not migrated\n`,
  );
  return ExitCode.ERROR;
}
