/**
 * Extra RabbitMQ nodes on this machine, beside the main node (rabbit@localhost on 5672, which
 * everyone's tests use and which is never touched here): a standalone node (e.g. a second
 * broker address for failover, or a node with a TLS listener given as extra config lines), or
 * a cluster of several. Every node this starts is stopped at teardown, and a node a crashed run
 * left behind is stopped by the next `startRabbitNodes`: its name carries NODE_PREFIX, and the
 * pid of the test process that started it is written beside it, so that the nodes of a test
 * still running (another file, another run) are left alone.
 *
 * How a node is made (root; `rabbitmq-server -detached` switches to the rabbitmq user):
 * - /etc/rabbitmq/rabbitmq.conf pins `listeners.tcp.local = 127.0.0.1:5672`, which beats
 *   RABBITMQ_NODE_PORT: each node gets its own RABBITMQ_CONFIG_FILE with its own listener;
 * - its own RABBITMQ_NODENAME, RABBITMQ_DIST_PORT, RABBITMQ_MNESIA_BASE, RABBITMQ_LOG_BASE and
 *   RABBITMQ_PID_FILE, in a folder the rabbitmq user owns (under BASE_DIR);
 * - it shares the main node's Erlang cookie (the rabbitmq user's home), so rabbitmqctl and
 *   join_cluster work without more set-up;
 * - `-detached` returns before the node registers with epmd, and `await_startup` fails at once
 *   on an unregistered node: the start is polled until await_startup succeeds.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/**
 * Who owns the nodes: an ava test (`t`: its teardown stops them) or a hook (no teardown there:
 * call `stopRabbitNodes` from `test.after.always`).
 */
export interface NodeOwner {
  log(...values: unknown[]): void;
  teardown?(fn: () => Promise<void> | void): void;
}

/** Node names start with this: `postage-ci-<id>@localhost`. */
export const NODE_PREFIX = 'postage-ci-';
/** Data, logs and config of the extra nodes. */
export const BASE_DIR = '/var/tmp/postage-rabbit-nodes';

export interface RabbitNodeOptions {
  /**
   * A small number naming the node and its default ports: node `postage-ci-<id>@localhost`,
   * AMQP on 127.0.0.1:(5680 + id), Erlang distribution on 25680 + id. Tests that run at the
   * same time must use different ids. Taken: 1–3 the cluster (test/deploy/cluster), 10–19
   * the fault suite (test/faults), 20–29 TLS (test/security).
   */
  id: number;
  /** AMQP port. Default: 5680 + id. */
  port?: number;
  /** Erlang distribution port. Default: 25680 + id. */
  distPort?: number;
  /**
   * More rabbitmq.conf lines, e.g. a TLS listener:
   * `listeners.ssl.default = 127.0.0.1:5691`, `ssl_options.cacertfile = /path/ca.pem`, … (files the
   * rabbitmq user can read). Default: none.
   */
  extraConfig?: readonly string[];
  /** Plugins to enable on this node (e.g. `rabbitmq_auth_mechanism_ssl`). Default: none. */
  plugins?: readonly string[];
}

export interface RabbitNode {
  /** Erlang node name, e.g. `postage-ci-1@localhost` (for `rabbitmqctl -n`). */
  readonly node: string;
  readonly id: number;
  readonly port: number;
  readonly distPort: number;
  readonly dir: string;
  /** `amqp://guest:guest@127.0.0.1:<port>/<vhost>`. */
  url(vhost?: string): string;
  /** rabbitmqctl against this node; resolves with stdout, rejects with stderr. */
  ctl(...args: string[]): Promise<string>;
  /** Starts the node again after `stop` (same data: it rejoins its cluster). */
  start(): Promise<void>;
  /** Stops the node and waits until its process is gone. Idempotent. */
  stop(): Promise<void>;
  readonly running: boolean;
}

const env = (): NodeJS.ProcessEnv => ({ ...process.env, PATH: `${process.env['PATH']}:/usr/sbin:/usr/lib/rabbitmq/bin` });

function exec(file: string, args: readonly string[], extraEnv: NodeJS.ProcessEnv = {}, timeout = 120_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, [...args], { env: { ...env(), ...extraEnv }, timeout, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${file} ${args.join(' ')}: ${(stderr || stdout || err.message).trim()}`));
      else resolve(stdout);
    });
  });
}

const rabbitmqctl = (node: string, ...args: string[]): Promise<string> => exec('rabbitmqctl', ['-q', '-n', node, ...args]);

class Node implements RabbitNode {
  readonly node: string;
  readonly port: number;
  readonly distPort: number;
  readonly dir: string;
  running = false;

  constructor(
    readonly id: number,
    options: RabbitNodeOptions,
  ) {
    this.node = `${NODE_PREFIX}${id}@localhost`;
    this.port = options.port ?? 5680 + id;
    this.distPort = options.distPort ?? 25680 + id;
    this.dir = path.join(BASE_DIR, `${NODE_PREFIX}${id}`);
    fs.mkdirSync(path.join(this.dir, 'mnesia'), { recursive: true });
    fs.mkdirSync(path.join(this.dir, 'log'), { recursive: true });
    const config = [`listeners.tcp.local = 127.0.0.1:${this.port}`, ...(options.extraConfig ?? [])];
    fs.writeFileSync(this.config, `# written by test/helpers/rabbit-nodes.ts\n${config.join('\n')}\n`);
    fs.writeFileSync(path.join(this.dir, OWNER_FILE), String(process.pid));
    fs.writeFileSync(path.join(this.dir, 'enabled_plugins'), `[${(options.plugins ?? []).join(',')}].\n`);
  }

  private get config(): string {
    return path.join(this.dir, 'rabbitmq.conf');
  }

  private get pidFile(): string {
    return path.join(this.dir, 'pid');
  }

  url(vhost = '/'): string {
    return `amqp://guest:guest@127.0.0.1:${this.port}/${encodeURIComponent(vhost)}`;
  }

  ctl(...args: string[]): Promise<string> {
    return rabbitmqctl(this.node, ...args);
  }

  async start(): Promise<void> {
    await exec('chown', ['-R', 'rabbitmq:rabbitmq', this.dir]);
    await exec('rabbitmq-server', ['-detached'], {
      RABBITMQ_NODENAME: this.node,
      RABBITMQ_NODE_PORT: String(this.port),
      RABBITMQ_DIST_PORT: String(this.distPort),
      RABBITMQ_CONFIG_FILE: this.config,
      RABBITMQ_MNESIA_BASE: path.join(this.dir, 'mnesia'),
      RABBITMQ_LOG_BASE: path.join(this.dir, 'log'),
      RABBITMQ_PID_FILE: this.pidFile,
      // The main node's enabled-plugins file would load its plugins here too (e.g. a management
      // listener on a port already taken).
      RABBITMQ_ENABLED_PLUGINS_FILE: path.join(this.dir, 'enabled_plugins'),
    });
    this.running = true;
    const deadline = Date.now() + 120_000;
    for (;;) {
      try {
        await this.ctl('await_startup', '--timeout', '60');
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`${this.node} did not start within 120 s: ${(err as Error).message}\nlog: ${this.logTail()}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    await stopNode(this.node, this.pidFile);
  }

  private logTail(): string {
    try {
      return fs.readFileSync(path.join(this.dir, 'log', `${this.node}.log`), 'utf8').slice(-2000);
    } catch {
      return '(no log)';
    }
  }
}

/** Stops a node by name; with its pid file, waits until the process is gone. */
async function stopNode(node: string, pidFile: string): Promise<void> {
  // `stop <pid_file>` returns once the node's OS process has exited.
  await rabbitmqctl(node, 'stop', ...(fs.existsSync(pidFile) ? [pidFile] : [])).catch(() => undefined);
}

/** The file beside a node's data holding the pid of the test process that started it. */
const OWNER_FILE = 'owner.pid';

/** Whether the process that started a node (its folder's owner.pid) is gone, or unknown. */
function orphaned(dir: string): boolean {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(path.join(dir, OWNER_FILE), 'utf8'));
  } catch {
    return true;
  }
  if (!Number.isInteger(pid) || pid <= 0) return true;
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/**
 * Stops the nodes NODE_PREFIX names that a gone test process left behind (epmd knows them,
 * their owner pid is dead) and removes their data; the nodes of running tests stay.
 */
export async function cleanupRabbitNodes(): Promise<string[]> {
  const names = await exec('epmd', ['-names']).catch(() => '');
  const running = [...names.matchAll(/^name (\S+) at port/gm)].map((m) => m[1]!).filter((n) => n.startsWith(NODE_PREFIX));
  const left = running.filter((name) => orphaned(path.join(BASE_DIR, name)));
  for (const name of left) await stopNode(`${name}@localhost`, path.join(BASE_DIR, name, 'pid'));
  let dirs: string[] = [];
  try {
    dirs = fs.readdirSync(BASE_DIR).filter((d) => d.startsWith(NODE_PREFIX));
  } catch {
    // no folder yet
  }
  for (const d of dirs) if (!running.includes(d) || left.includes(d)) if (orphaned(path.join(BASE_DIR, d))) fs.rmSync(path.join(BASE_DIR, d), { recursive: true, force: true });
  return left;
}

/**
 * Starts standalone nodes (in parallel); with a test as owner they are stopped and their data
 * removed at its teardown. Cleans up a crashed earlier run's nodes first.
 */
export async function startRabbitNodes(owner: NodeOwner, options: readonly RabbitNodeOptions[]): Promise<RabbitNode[]> {
  const left = await cleanupRabbitNodes();
  if (left.length > 0) owner.log(`stopped nodes left by an earlier run: ${left.join(', ')}`);
  const names = await exec('epmd', ['-names']).catch(() => '');
  for (const o of options) {
    // Another test process (still running) has a node with this id: ids must differ between tests that can run together.
    if (names.includes(`name ${NODE_PREFIX}${o.id} at port`)) throw new Error(`node ${NODE_PREFIX}${o.id} is in use by another test process: give this test other node ids`);
  }
  const nodes = options.map((o) => new Node(o.id, o));
  owner.teardown?.(() => stopRabbitNodes(nodes));
  const t0 = performance.now();
  try {
    await Promise.all(nodes.map((n) => n.start()));
  } catch (err) {
    if (!owner.teardown) await stopRabbitNodes(nodes);
    throw err;
  }
  owner.log(`started ${nodes.map((n) => `${n.node} (:${n.port})`).join(', ')} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return nodes;
}

/** Stops the nodes and removes their data. */
export async function stopRabbitNodes(nodes: readonly RabbitNode[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.stop()));
  for (const n of nodes) fs.rmSync(n.dir, { recursive: true, force: true });
}

/** Starts `options.length` nodes and joins them into one cluster (the first node's). */
export async function startRabbitCluster(owner: NodeOwner, options: readonly RabbitNodeOptions[]): Promise<RabbitNode[]> {
  const nodes = await startRabbitNodes(owner, options);
  const [first, ...rest] = nodes;
  const t0 = performance.now();
  try {
    for (const n of rest) {
      await n.ctl('stop_app');
      await n.ctl('join_cluster', first!.node);
      await n.ctl('start_app');
      await n.ctl('await_startup', '--timeout', '60');
    }
    const status = JSON.parse(await first!.ctl('cluster_status', '--formatter', 'json')) as { running_nodes: string[] };
    const missing = nodes.filter((n) => !status.running_nodes.includes(n.node));
    if (missing.length > 0) throw new Error(`cluster formed without ${missing.map((n) => n.node).join(', ')}: ${JSON.stringify(status)}`);
  } catch (err) {
    if (!owner.teardown) await stopRabbitNodes(nodes);
    throw err;
  }
  owner.log(`clustered ${nodes.length} nodes in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return nodes;
}
