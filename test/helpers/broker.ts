/**
 * Test access to the real broker: reachability, a fresh vhost per test, and rabbitmqctl
 * read-backs. Under CI=true an unreachable broker fails the run; locally the broker tests
 * are skipped, saying which address was tried.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { Connection } from 'postage';

const run = promisify(execFile);

export const BROKER_HOST = process.env['POSTAGE_HOST'] ?? '127.0.0.1';
export const BROKER_PORT = Number(process.env['POSTAGE_PORT'] ?? 5672);

function probe(): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: BROKER_HOST, port: BROKER_PORT });
    socket.setTimeout(2000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}

export const brokerReachable = await probe();
if (!brokerReachable && process.env['CI'] !== 'true') {
  console.warn(`broker tests skipped: nothing answers at amqp://${BROKER_HOST}:${BROKER_PORT} (set CI=true to fail instead)`);
}

/** `test` when the broker is reachable or under CI (where an unreachable broker must fail); `test.skip` otherwise. */
export const brokerTest: TestFn = brokerReachable || process.env['CI'] === 'true' ? anyTest : (anyTest.skip as unknown as TestFn);

/** Runs rabbitmqctl and returns its stdout. */
export async function rabbitmqctl(...args: string[]): Promise<string> {
  const { stdout } = await run('rabbitmqctl', ['-q', ...args], { env: { ...process.env, PATH: `${process.env['PATH']}:/usr/sbin` }, maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

/** An Erlang binary literal of a UTF-8 string, for expressions evaluated on the broker. */
export const erlBinary = (text: string): string => `<<"${text.replace(/["\\]/g, (c) => `\\${c}`)}"/utf8>>`;

/**
 * The local node reached through `erl_call` (Erlang's erl_interface): an expression is
 * evaluated on the running node over Erlang distribution, for ~20 ms of CPU, where each
 * rabbitmqctl call boots an Erlang VM of its own (~0.9 s of CPU, measured with process
 * accounting over a suite run: its 330 calls were a fifth of the suite's CPU on a 2-core
 * machine). Used when erl_call is installed and the node's cookie is readable (as root, or as
 * the rabbitmq user); otherwise every read-back goes through rabbitmqctl as before.
 */
const erlNode: ErlNode | undefined = await findErlNode();

async function findErlNode(): Promise<ErlNode | undefined> {
  // erl_call reads the cookie from $HOME/.erlang.cookie: pointed at the broker's own file,
  // the secret is never copied nor put on a command line (where `ps` would show it).
  const home = ['/var/lib/rabbitmq', os.homedir()].find((dir) => {
    try {
      fs.accessSync(path.join(dir, '.erlang.cookie'), fs.constants.R_OK);
      return true;
    } catch {
      return false;
    }
  });
  if (!home) return undefined;
  const candidates = new Set([process.env['RABBITMQ_NODENAME'], 'rabbit@localhost', `rabbit@${os.hostname().split('.')[0]}`].filter((n): n is string => Boolean(n)));
  for (const name of candidates) {
    const node: ErlNode = { node: name, home, flag: name.split('@')[1]?.includes('.') ? '-name' : '-sname' };
    try {
      const { stdout } = await run('erl_call', erlCallArgs(node, ['-a', 'rabbit is_running []']), { timeout: 5000, env: { ...process.env, HOME: home } });
      if (stdout.trim() === 'true') return node;
    } catch {
      // no erl_call, or not this node
    }
  }
  return undefined;
}

interface ErlNode {
  node: string;
  /** The folder whose .erlang.cookie is the node's. */
  home: string;
  flag: '-name' | '-sname';
}

/** -R: a name for erl_call's own node given by the peer, so that calls made at once do not clash. */
function erlCallArgs(node: ErlNode, rest: string[]): string[] {
  return ['-R', node.flag, node.node, ...rest];
}

/**
 * Evaluates Erlang expressions on the broker's node through erl_call and returns the text
 * `format` makes of their value (an Erlang fun from the value to iodata). The text travels
 * hex-encoded: erl_call cuts long binaries short, escapes strings its own way, and prints
 * strings over 65,535 characters as lists of codes. `undefined` when erl_call cannot do it
 * (not installed, too old for -R, the node refused): the caller uses rabbitmqctl then.
 */
async function erlEval(expressions: string, format: string): Promise<string | undefined> {
  const node = erlNode;
  if (!node) return undefined;
  const body = expressions.trim().replace(/\.$/, '');
  const child = execFile('erl_call', erlCallArgs(node, ['-e']), { timeout: 180_000, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, HOME: node.home } });
  const answer = new Promise<{ code: number | null; stdout: string }>((resolve) => {
    let stdout = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.on('error', () => resolve({ code: -1, stdout }));
    child.on('close', (code) => resolve({ code, stdout: stdout.trim() }));
  });
  // erl_call may be gone before it read its input (it could not connect): its answer says so.
  child.stdin?.on('error', () => undefined);
  child.stdin?.end(`Value__ = begin ${body} end, binary_to_list(binary:encode_hex(iolist_to_binary((${format})(Value__)))).\n`);
  const { code, stdout } = await answer;
  const m = code === 0 ? /^\{ok,\s*(?:"([0-9A-F]*)"|\[([\d,\s]*)\])\}$/.exec(stdout) : null;
  if (!m) return undefined;
  const hex = m[1] ?? (m[2] ?? '').split(',').filter((c) => c.trim() !== '').map((c) => String.fromCharCode(Number(c))).join('');
  return Buffer.from(hex, 'hex').toString('utf8');
}

/**
 * Evaluates Erlang expressions on the broker's node (erl_call, else `rabbitmqctl eval`) and
 * returns the value printed without whitespace: for results made of numbers, atoms and
 * tuples or lists of them (printed as lists of numbers either way).
 */
export async function brokerEval(expressions: string): Promise<string> {
  const viaErl = await erlEval(expressions, 'fun(V) -> io_lib:format("~w", [V]) end');
  return (viaErl ?? (await rabbitmqctl('eval', expressions))).replace(/\s+/g, '');
}

/** The value of Erlang expressions evaluated on the broker's node, as `rabbit_json` encodes it, parsed; `undefined` when erl_call cannot. */
async function erlJson(expressions: string): Promise<unknown> {
  const text = await erlEval(expressions, 'fun rabbit_json:encode/1');
  return text === undefined ? undefined : JSON.parse(text);
}

export function urlFor(vhost: string): string {
  return `amqp://guest:guest@${BROKER_HOST}:${BROKER_PORT}/${encodeURIComponent(vhost)}`;
}

export interface TestVhost {
  vhost: string;
  url: string;
  /** A connection to the vhost, closed at teardown. */
  connection: Connection;
}

/**
 * Runs `each` over `names` in ONE rabbitmqctl call (an Erlang `eval`), falling back to one
 * call per name when the broker's internal API differs. Every rabbitmqctl call boots an
 * Erlang VM (~0.5 s of CPU): three per test made the CLI, not the broker, the bottleneck of
 * a loaded machine, and tests timed out behind it.
 */
async function batchCtl(names: readonly string[], erlang: (list: string) => string, fallback: (name: string) => Promise<unknown>): Promise<void> {
  if (names.length === 0) return;
  const list = `[${names.map(erlBinary).join(',')}]`;
  try {
    if ((await brokerEval(erlang(list))) === 'ok') return;
  } catch {
    // below: the same, one command at a time
  }
  for (const name of names) await fallback(name);
}

/** Collects the names asked for within a few ms (tests of a file start together) into one batch. */
function batcher(run: (names: string[]) => Promise<void>): (name: string) => Promise<void> {
  let pending: { names: string[]; done: Promise<void> } | undefined;
  return (name) => {
    if (!pending) {
      const batch: { names: string[]; done: Promise<void> } = { names: [], done: Promise.resolve() };
      batch.done = new Promise<void>((resolve) => setTimeout(resolve, 10)).then(() => {
        if (pending === batch) pending = undefined;
        return run(batch.names);
      });
      pending = batch;
    }
    pending.names.push(name);
    return pending.done;
  };
}

const createVhost = batcher((names) =>
  batchCtl(
    names,
    (list) =>
      `lists:foreach(fun(V) -> ok = rabbit_vhost:add(V, <<"postage-tests">>), ok = rabbit_auth_backend_internal:set_permissions(<<"guest">>, V, <<".*">>, <<".*">>, <<".*">>, <<"postage-tests">>) end, ${list}), ok.`,
    async (name) => {
      await rabbitmqctl('add_vhost', name);
      await rabbitmqctl('set_permissions', '-p', name, 'guest', '.*', '.*', '.*');
    },
  ),
);

const deleteVhost = batcher((names) =>
  batchCtl(
    names,
    (list) => `lists:foreach(fun(V) -> catch rabbit_vhost:delete(V, <<"postage-tests">>) end, ${list}), ok.`,
    (name) => rabbitmqctl('delete_vhost', name).catch(() => undefined),
  ),
);

/** Creates vhost `name` on which guest may do everything (for a vhost that outlives one test: delete it with `deleteVhostNamed`). */
export function createVhostNamed(name: string): Promise<void> {
  return createVhost(name);
}

/** Deletes vhost `name` with its connections; no error if it is gone. */
export function deleteVhostNamed(name: string): Promise<void> {
  return deleteVhost(name);
}

/** Creates a vhost on which guest may do everything; deleted (with its connections) at teardown. */
export async function scratchVhost(t: ExecutionContext, prefix = 'postage-test'): Promise<{ vhost: string; url: string }> {
  const vhost = `${prefix}-${randomUUID().slice(0, 8)}`;
  await createVhost(vhost);
  t.teardown(() => deleteVhost(vhost));
  return { vhost, url: urlFor(vhost) };
}

/** Creates a fresh vhost for this test, deleted (with its connections) at teardown. */
export async function freshVhost(t: ExecutionContext, prefix = 'postage-test'): Promise<TestVhost> {
  const { vhost, url } = await scratchVhost(t, prefix);
  const connection = new Connection({ url, clientName: `test ${t.title}` });
  // Teardowns run last-registered first: the connection closes before the vhost goes.
  t.teardown(() => connection.close('test done'));
  return { vhost, url, connection };
}

/**
 * Whether a queue exists, asked with a passive declare on a channel of its own: immediate,
 * unlike a rabbitmqctl read-back, which can take seconds on a loaded machine (long enough
 * for an `x-expires` timer to fire in between). RabbitMQ counts a passive declare as use and
 * renews the queue's `x-expires` lease (measured here): never poll this to wait for a queue
 * to expire; poll `listQueues` for that.
 */
export async function queueExists(connection: Connection, queue: string): Promise<boolean> {
  const ch = await connection.createChannel();
  ch.on('error', () => undefined);
  try {
    await ch.checkQueue(queue);
    return true;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return false;
    throw err;
  } finally {
    await ch.close().catch(() => undefined);
  }
}

export interface QueueInfo {
  name: string;
  durable: boolean;
  auto_delete: boolean;
  exclusive: boolean;
  arguments: Record<string, unknown>;
  messages: number;
  consumers: number;
}

/** Queues of a vhost as the broker sees them. */
export async function listQueues(vhost: string): Promise<QueueInfo[]> {
  // The same columns as rabbitmqctl's, below; a broker whose internals differ is read with rabbitmqctl.
  const rows = (await erlJson(
        `[maps:from_list([case KV of {name, R} -> {name, element(4, R)}; {arguments, As} -> {arguments, maps:from_list([{K, V} || {K, _T, V} <- As])}; _ -> KV end || KV <- Q]) || Q <- rabbit_amqqueue:info_all(${erlBinary(vhost)}, [name, durable, auto_delete, exclusive, arguments, messages, consumers])]`,
      ).catch(() => undefined)) as Array<Record<string, unknown>> | undefined;
  if (rows) return rows.map(queueInfo);
  const out = await rabbitmqctl('list_queues', '-p', vhost, 'name', 'durable', 'auto_delete', 'exclusive', 'arguments', 'messages', 'consumers', '--formatter', 'json');
  return (JSON.parse(out) as Array<Record<string, unknown>>).map(queueInfo);
}

function queueInfo(r: Record<string, unknown>): QueueInfo {
  return {
    name: String(r['name']),
    durable: Boolean(r['durable']),
    auto_delete: Boolean(r['auto_delete']),
    exclusive: Boolean(r['exclusive']),
    arguments: argumentsObject(r['arguments']),
    messages: Number(r['messages'] ?? 0),
    consumers: Number(r['consumers'] ?? 0),
  };
}

function argumentsObject(value: unknown): Record<string, unknown> {
  if (Array.isArray(value)) {
    // rabbitmqctl prints arguments as [[name, value], ...] or [{name: value}, ...] by version.
    const out: Record<string, unknown> = {};
    for (const item of value) {
      // [name, type, value] triples (3.x json formatter) or [name, value] pairs.
      if (Array.isArray(item)) out[String(item[0])] = item.at(-1);
      else if (item && typeof item === 'object') Object.assign(out, item);
    }
    return out;
  }
  return value && typeof value === 'object' ? (value as Record<string, unknown>) : {};
}

export interface BindingInfo {
  source: string;
  destination: string;
  key: string;
}

/** Bindings of a vhost (the default exchange's implicit ones left out). */
export async function listBindings(vhost: string): Promise<BindingInfo[]> {
  const viaErl = (await erlJson(`[#{source => element(4, element(2, B)), destination => element(4, element(4, B)), key => element(3, B)} || B <- rabbit_binding:list(${erlBinary(vhost)})]`).catch(
    () => undefined,
  )) as Array<{ source: string; destination: string; key: string }> | undefined;
  if (viaErl) return viaErl.filter((r) => r.source !== '').map((r) => ({ source: r.source, destination: r.destination, key: r.key }));
  const out = await rabbitmqctl('list_bindings', '-p', vhost, 'source_name', 'destination_name', 'routing_key', '--formatter', 'json');
  const rows = JSON.parse(out) as Array<Record<string, unknown>>;
  return rows.filter((r) => r['source_name'] !== '').map((r) => ({ source: String(r['source_name']), destination: String(r['destination_name']), key: String(r['routing_key']) }));
}
