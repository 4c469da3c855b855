/**
 * A fleet on a RabbitMQ cluster (SPEC §7): three extra nodes on this machine clustered together
 * (test/helpers/rabbit-nodes.ts; the main node stays standalone), two daemons standing for two
 * hosts (`--host`), each given the whole address list but starting on a different node, shared
 * queues declared as quorum queues (`topology.quorum`).
 */
import type { ExecutionContext } from 'ava';
import test from 'ava';
import { Connection, RpcCommand, type MessageResult } from 'postage';
import { controlProducer, pluginFolder, startDaemon, type DaemonProcess } from '../helpers/spawn.js';
import { startRabbitCluster, stopRabbitNodes, type RabbitNode } from '../helpers/rabbit-nodes.js';
import { waitFor } from '../helpers/wait-for.js';

/** One cluster for the file (it takes about 20 s to form); each test has its own vhost and daemons. */
let cluster: RabbitNode[] = [];
test.before(async (t) => {
  // A hook's t has no teardown: test.after.always stops the nodes.
  cluster = await startRabbitCluster({ log: (...v: unknown[]) => t.log(...v) }, [{ id: 1 }, { id: 2 }, { id: 3 }]);
});
test.after.always(async () => {
  await stopRabbitNodes(cluster);
});

interface Fleet {
  nodes: RabbitNode[];
  vhost: string;
  a: DaemonProcess;
  b: DaemonProcess;
  /** A client connection to the third node (never stopped here). */
  client: Connection;
}

async function startFleet(t: ExecutionContext, vhost: string): Promise<Fleet> {
  const nodes = cluster;
  const [n1, n2, n3] = nodes as [RabbitNode, RabbitNode, RabbitNode];
  await n1.ctl('add_vhost', vhost);
  await n1.ctl('set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*');
  const plugins = pluginFolder(t, ['echo-mjs.mjs', 'recorder.mjs']);
  // The whole address list for both, in a different order: A starts on node 1, B on node 2.
  const list = (order: RabbitNode[]): string => order.map((n) => n.url(vhost)).join(',');
  const env = { POSTAGED_QUORUM: 'true', POSTAGED_HEARTBEAT: '5' };
  const [a, b] = await Promise.all([
    startDaemon(t, { url: list([n1, n2, n3]), args: ['--plugins', plugins, '--host', 'host-a'], env }),
    startDaemon(t, { url: list([n2, n3, n1]), args: ['--plugins', plugins, '--host', 'host-b'], env }),
  ]);
  const client = new Connection({ url: n3.url(vhost), clientName: 'fleet test client' });
  t.teardown(() => client.close('test done'));
  return { nodes, vhost, a, b, client };
}

/** The AMQP port of the node each postaged connection of the vhost is on, by daemon PID. */
async function daemonPorts(node: RabbitNode, vhost: string): Promise<Map<number, number>> {
  const rows = JSON.parse(await node.ctl('list_connections', '-p', vhost, 'port', 'client_properties', '--formatter', 'json')) as Array<{ port: number; client_properties: unknown }>;
  const ports = new Map<number, number>();
  for (const r of rows) {
    const m = /postaged \S+ (\d+)@/.exec(JSON.stringify(r.client_properties));
    if (m) ports.set(Number(m[1]), r.port);
  }
  return ports;
}

async function collect(client: Connection, key: string, name: string, parameters: unknown = {}, timeout = 2): Promise<MessageResult[]> {
  return controlProducer(client).rpcCollect(new RpcCommand(name, parameters), { _key: key, _timeout: timeout });
}

/** The PIDs that answered a ping (its value is the responder's fingerprint). */
const pidsOf = (replies: readonly MessageResult[]): number[] => [...new Set(replies.map((r) => Number((r.value as { pid: string }).pid)))].sort((x, y) => x - y);

test.serial('two daemons on a three-node cluster: different nodes, quorum shared queues, @H, N@H and N@H/rr reach the right daemon', async (t) => {
  const { nodes, vhost, a, b, client } = await startFleet(t, 'postage-fleet-addressing');
  const ports = await daemonPorts(nodes[0]!, vhost);
  t.log(`daemon A (pid ${a.pid}) on :${ports.get(a.pid)}, daemon B (pid ${b.pid}) on :${ports.get(b.pid)}`);
  t.is(ports.get(a.pid), nodes[0]!.port, 'A connected through node 1');
  t.is(ports.get(b.pid), nodes[1]!.port, 'B connected through node 2');

  const queues = JSON.parse(await nodes[2]!.ctl('list_queues', '-p', vhost, 'name', 'type', 'members', '--formatter', 'json')) as Array<{ name: string; type: string; members?: string[] }>;
  const typeOf = (name: string): string | undefined => queues.find((q) => q.name === name)?.type;
  for (const shared of ['echo-mjs', 'echo-mjs@host-a', 'echo-mjs@host-b', 'recorder', 'postaged']) t.is(typeOf(shared), 'quorum', `${shared} is a quorum queue`);
  t.is(queues.find((q) => q.name === 'recorder')?.members?.length, 3, 'replicated on the three nodes');
  t.is(typeOf(`echo-mjs:${a.pid}@host-a`), 'quorum', "an instance's own queue is quorum too");

  // Fan-out by host: everything on host-a answers, nothing of host-b.
  const onA = await collect(client, '@host-a', 'ping');
  t.deepEqual(pidsOf(onA), [a.pid], '@host-a reaches daemon A only');
  t.deepEqual(onA.map((r) => (r.value as { name: string }).name).sort(), ['echo-mjs', 'postaged', 'recorder']);
  const echoB = await collect(client, 'echo-mjs@host-b', 'ping');
  t.deepEqual(pidsOf(echoB), [b.pid], 'echo-mjs@host-b reaches B only');
  for (let i = 0; i < 4; i++) {
    const one = await controlProducer(client).rpcCommand('ping', {}, { _key: 'echo-mjs@host-a/rr', _timeout: 3, _max_retry: 0 });
    t.is(Number((one.value as { pid: string }).pid), a.pid, 'echo-mjs@host-a/rr reaches A');
  }
  const everyone = await collect(client, 'echo-mjs', 'ping');
  t.deepEqual(pidsOf(everyone), [a.pid, b.pid].sort((x, y) => x - y), 'echo-mjs reaches both hosts');
});

/**
 * Reconnection over the whole address list moves A to another node; with topology.quorum A's own
 * queue (N:P@H) is a quorum queue too, so it is declared again through the new node (a classic one
 * is refused while its home node is down: 404 "home node … is down or inaccessible").
 */
test.serial('stopping the node a daemon is connected to moves it to another within seconds; nothing sent to N/rr is lost; @H still reaches it', async (t) => {
  const { nodes, vhost, a, b, client } = await startFleet(t, 'postage-fleet-failover');
  const [n1, n2] = nodes as [RabbitNode, RabbitNode];
  const producer = controlProducer(client);
  // Publish to recorder/rr (the quorum queue both daemons consume) all along: every send confirmed.
  const sent: number[] = [];
  let publishing = true;
  const publisher = (async () => {
    for (let id = 1; publishing; id++) {
      await producer.sendCommand('record', { id }, { _key: 'recorder/rr' });
      sent.push(id);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  // Whatever happens below, the publisher stops before the client connection closes.
  t.teardown(async () => {
    publishing = false;
    await publisher.catch(() => undefined);
  });
  await waitFor('a first message handled', () => a.find('recorded').length + b.find('recorded').length > 10, 20_000);

  const t0 = performance.now();
  await n1.stop();
  t.log(`node 1 stopped in ${(performance.now() - t0).toFixed(0)} ms`);
  const moved = await waitFor('daemon A connected through another node', async () => (await daemonPorts(n2, vhost)).get(a.pid), 20_000, 200).catch((err: Error) => {
    t.log(`${err.message}; A's last log lines:\n${a.tail(6)}`);
    throw err;
  });
  const movedMs = performance.now() - t0;
  t.log(`daemon A connected through :${moved} ${movedMs.toFixed(0)} ms after node 1 began to stop`);
  const answered = await waitFor('daemon A answers on its own key', async () => {
    const r = await producer.rpcCommand('ping', {}, { _key: `postaged:${a.pid}@host-a`, _timeout: 1, _max_retry: 0 });
    return r.ok;
  }, 20_000, 100).catch((err: Error) => {
    t.log(`${err.message}; A's last log lines but 'recorded':\n${a.lines.filter((l) => l.message !== 'recorded').slice(-15).map((l) => JSON.stringify(l)).join('\n')}`);
    throw err;
  });
  t.truthy(answered);
  t.log(`daemon A answering on its own key ${(performance.now() - t0).toFixed(0)} ms after node 1 began to stop`);
  t.true(movedMs < 10_000, 'moved within seconds');

  // A few more seconds of traffic, then every confirmed id must have been handled somewhere.
  await new Promise((r) => setTimeout(r, 2000));
  publishing = false;
  await publisher;
  const handled = (): Set<number> => new Set([...a.find('recorded'), ...b.find('recorded')].map((l) => Number(l['id'])));
  await waitFor('every sent id handled', () => sent.every((id) => handled().has(id)), 30_000, 100).catch(() => undefined);
  const lost = sent.filter((id) => !handled().has(id));
  const total = a.find('recorded').length + b.find('recorded').length;
  t.log(`sent ${sent.length} to recorder/rr, handled ${handled().size} distinct (${total - handled().size} duplicates), lost ${lost.length}`);
  t.deepEqual(lost, [], 'nothing lost on N/rr');

  const onA = await collect(client, '@host-a', 'ping');
  t.deepEqual(pidsOf(onA), [a.pid], '@host-a still reaches daemon A (its own queues re-declared on a live node)');
});
