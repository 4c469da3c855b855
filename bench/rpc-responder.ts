/**
 * The responder side of bench/rpc.bench.ts, in its own process as responders are in real
 * deployments: in one process the responder's work after the reply (confirm, ack, next
 * step) would share the client's event loop and be counted as client latency.
 *
 * Started with `fork(this file, [url])`. Serves two responders on the vhost of `url`:
 * - raw: an amqplib consumer on queue `raw-echo` (bound to the GenericApplication exchange
 *   with key `raw-echo`) that answers a fixed, pre-encoded Postage result and acks;
 * - postage: a GenericApplication `BenchEcho` whose `RpcHandler('command', 'echo')` returns
 *   the parameters.
 * IPC: sends `{ ready: true }` once both consume; answers `{ cmd: 'cpu' }` with its
 * `process.cpuUsage()`; `{ cmd: 'stop' }` (or the parent going away) closes everything and exits.
 */
import amqp from 'amqplib';
import { Connection, GenericApplication, GenericApplicationExchange, MessageResult, MicroScheduler, RpcHandler } from 'postage';
import { queueFlags } from 'postage/internal';
import { until } from './helpers.js';

export const APP = 'BenchEcho';
export const RAW_QUEUE = 'raw-echo';

class BenchEcho extends GenericApplication {
  static override appName = APP;

  @RpcHandler('command', 'echo')
  echo(content: { parameters?: unknown }): unknown {
    return content.parameters;
  }
}

/** What the parent sends. */
export type ResponderCommand = { cmd: 'cpu' } | { cmd: 'stop' };
/** What this process sends. */
export type ResponderMessage = { ready: true } | { cpu: NodeJS.CpuUsage } | { error: string };

async function main(url: string): Promise<void> {
  const rawConn = await amqp.connect(url, { noDelay: true });
  const connection = new Connection({ url, clientName: 'bench rpc responder (postage)' });
  const app = new BenchEcho({ connection, prefetch: 100 });
  const scheduler = new MicroScheduler();
  let done: Promise<void> | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      await app.close('bench done');
      await done;
      await connection.close('bench done');
      await rawConn.close().catch(() => undefined);
    })());

  process.on('message', (msg: ResponderCommand) => {
    if (msg.cmd === 'cpu') process.send?.({ cpu: process.cpuUsage() } satisfies ResponderMessage);
    else if (msg.cmd === 'stop') void stop().finally(() => process.disconnect());
  });
  // The parent is gone (crashed or killed): nobody will send 'stop'.
  process.on('disconnect', () => void stop().finally(() => process.exit(0)));

  const ch = await rawConn.createChannel();
  // Both responders sit behind the same direct exchange, so routing costs the broker the same.
  await GenericApplicationExchange.declare(ch);
  await ch.assertQueue(RAW_QUEUE, queueFlags('shared', RAW_QUEUE) ?? {});
  await ch.bindQueue(RAW_QUEUE, GenericApplicationExchange.name, RAW_QUEUE);
  await ch.prefetch(100);
  const fp = { name: 'bench-responder', type: 'bench' };
  const reply = Buffer.from(JSON.stringify(new MessageResult({ n: 1 }).setFingerprint(fp).body));
  await ch.consume(RAW_QUEUE, (msg) => {
    if (!msg) return;
    const { replyTo, correlationId } = msg.properties as { replyTo?: string; correlationId?: string };
    if (replyTo) ch.publish('', replyTo, reply, { contentType: 'application/json', ...(correlationId ? { correlationId } : {}) });
    ch.ack(msg);
  });

  scheduler.add(app);
  done = scheduler.run();
  await until('the postage responder to consume', () => app.consuming, 10_000);
  process.send?.({ ready: true } satisfies ResponderMessage);
}

const url = process.argv[2];
if (url !== undefined && process.send !== undefined) {
  main(url).catch((err: unknown) => {
    process.send?.({ error: String((err as Error)?.stack ?? err) } satisfies ResponderMessage);
    process.exitCode = 1;
    process.disconnect();
  });
}
