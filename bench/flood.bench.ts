/**
 * Fairness inside one daemon (issue 14 goal, to keep: a neighbour's `ping` p99 < 50 ms
 * while another application of the same daemon drains a 50k flood).
 *
 * A `./bin/postaged` at its defaults runs the plugin `neighbour`. Each round:
 * - idle: sequential `ping` RPCs to `neighbour` (raw amqplib caller), their p99;
 * - flood: the shared queue of a plugin `flood-<r>` that does not run yet is filled with
 *   50,000 `hit` commands, then the plugin is dropped into the folder; while it drains, the
 *   same sequential pings go to `neighbour`. Only pings sent between the flood's first and
 *   last handled message count (the plugin reports both, in epoch ms).
 */
import amqp from 'amqplib';
import { GenericApplicationExchange } from 'postage';
import { queueFlags } from 'postage/internal';
import { BenchDaemon } from './bench-daemon.js';
import { benchPlugin } from './bench-plugins.js';
import { waitForStats } from './daemon-drain.js';
import { epochMs, pairedRow, percentile, progress, report, setting, withVhost } from './helpers.js';
import { fill, hitBody } from './raw-consumer.js';
import { RawRpcClient, rpcBody } from './raw-rpc.js';

const FLOOD = setting('FLOOD_N', 50_000);
const IDLE_PINGS = setting('FLOOD_IDLE_PINGS', 300);
const ROUNDS = setting('FLOOD_ROUNDS', 3);
const NEIGHBOUR = 'neighbour';
const GAE = GenericApplicationExchange.name;

interface Ping {
  sent: number;
  ms: number;
}

await withVhost('postage-bench-flood', async (url) => {
  const conn = await amqp.connect(url, { noDelay: true });
  const daemon = BenchDaemon.spawn({ url }, { [`${NEIGHBOUR}.mjs`]: benchPlugin(NEIGHBOUR, 'mjs') });
  let client: RawRpcClient | undefined;
  try {
    const pub = await conn.createConfirmChannel();
    await daemon.ready();
    const c = await RawRpcClient.open(conn);
    client = c;
    await waitForStats(c, NEIGHBOUR, () => true, 30_000);
    const ping = rpcBody('ping');
    const pingOnce = async (): Promise<Ping> => {
      const sent = epochMs();
      const t0 = performance.now();
      await c.value(GAE, NEIGHBOUR, ping);
      return { sent, ms: performance.now() - t0 };
    };
    const content = hitBody();

    const idleP99: number[] = [];
    const floodP99: number[] = [];
    const idleP50: number[] = [];
    const floodP50: number[] = [];
    const drainRates: number[] = [];
    progress('warm-up');
    for (let i = 0; i < 100; i++) await pingOnce();
    for (let r = 1; r <= ROUNDS; r++) {
      const idle: number[] = [];
      for (let i = 0; i < IDLE_PINGS; i++) idle.push((await pingOnce()).ms);

      const name = `flood-${r}`;
      await pub.assertQueue(name, queueFlags('shared', name) ?? {});
      await fill(pub, name, FLOOD, content);
      const file = `${name}.mjs`;
      daemon.write(file, benchPlugin(name, 'mjs'));
      const pings: Ping[] = [];
      let flooding = true;
      const pinger = (async () => {
        while (flooding) pings.push(await pingOnce());
      })();
      const stats = await waitForStats(c, name, (s) => s.count >= FLOOD, 180_000, 200);
      flooding = false;
      await pinger;
      daemon.remove(file);
      const during = pings.filter((p) => p.sent >= stats.first && p.sent <= stats.last).map((p) => p.ms);
      if (during.length < 20) throw new Error(`only ${during.length} pings fell inside the flood of round ${r}; raise BENCH_FLOOD_N`);
      idleP99.push(percentile(idle, 99));
      idleP50.push(percentile(idle, 50));
      floodP99.push(percentile(during, 99));
      floodP50.push(percentile(during, 50));
      drainRates.push(((FLOOD - 1) * 1000) / (stats.last - stats.first));
      progress(`round ${r}/${ROUNDS}: idle p99 ${idleP99.at(-1)!.toFixed(2)} ms; during the flood (${during.length} pings, drained at ${Math.round(drainRates.at(-1)!)} msg/s) p50 ${floodP50.at(-1)!.toFixed(2)} ms, p99 ${floodP99.at(-1)!.toFixed(2)} ms`);
    }
    report(
      'flood',
      [
        pairedRow({ metric: `neighbour ping p99 while another plugin drains ${FLOOD}`, unit: 'ms', baselineName: 'same pings, daemon idle', baseline: idleP99, ours: floodP99, goal: { of: 'ours', op: '<=', value: 50 }, note: 'postaged at its defaults (prefetch 50, concurrency 1)' }),
        pairedRow({ metric: 'neighbour ping p50 during the flood', unit: 'ms', baselineName: 'same pings, daemon idle', baseline: idleP50, ours: floodP50, note: 'diagnostic' }),
      ],
      { flood: FLOOD, idlePings: IDLE_PINGS, rounds: ROUNDS, floodDrainRateMsgPerS: Math.round(drainRates.sort((a, b) => a - b)[Math.floor(drainRates.length / 2)]!) },
    );
  } finally {
    await client?.close();
    await daemon.stop();
    await conn.close().catch(() => undefined);
  }
});
