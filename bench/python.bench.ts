/**
 * Python Postage 1.2.1 at its defaults against postaged at its defaults, in the same run
 * (issue 14 goals: ≥ 3× its messages/s, ≥ 5× its calls/s).
 *
 * The Python side is bench/python/postage_like.py on Debian's `python3-pika`, run by
 * /usr/bin/python3 (BENCH_PYTHON overrides): a consumer at prefetch 1 acking each message, a
 * responder, and a caller with a fresh exclusive reply queue per call and no correlation id,
 * on non-durable auto-delete queues, as Postage 1.2.1 does. Without pika the bench is skipped
 * with one line saying so.
 *
 * Ours: a plugin in a spawned `./bin/postaged` with no configuration (prefetch 50,
 * concurrency 1, durable topology). Messages/s: each side drains the same number of `hit`
 * commands from a queue filled beforehand (the daemon's plugin is hot-loaded onto it; the
 * Python consumer started on it), timed from the first to the last message handled. Calls/s:
 * sequential calls, one in flight, as Postage's blocking caller makes them: the Python
 * caller to the Python responder, and `GenericProducer.rpcCommand()` to the daemon's plugin.
 * A third pair, the Python caller to the daemon's plugin, shows which side the time is on
 * (and that a correlation-less Python caller is answered).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import amqp from 'amqplib';
import { Connection, GenericApplicationExchange, GenericProducer, type MessageResult } from 'postage';
import { BenchDaemon } from './bench-daemon.js';
import { benchPlugin } from './bench-plugins.js';
import { DaemonDrainer, waitForStats } from './daemon-drain.js';
import { pairedRow, progress, report, ROOT, roundOrder, ROUNDS, setting, skip, withVhost } from './helpers.js';
import { fill, hitBody } from './raw-consumer.js';
import { RawRpcClient } from './raw-rpc.js';

const run = promisify(execFile);
const PYTHON = process.env['BENCH_PYTHON'] ?? '/usr/bin/python3';
const SCRIPT = path.join(ROOT, 'bench', 'python', 'postage_like.py');
const N = setting('PYTHON_N', 4000);
const CALLS = setting('PYTHON_CALLS', 300);
const PY_RESPONDER = 'py-echo';
const TS_RESPONDER = 'ts-echo';

async function pikaVersion(): Promise<string | undefined> {
  try {
    const { stdout } = await run(PYTHON, ['-c', 'import pika; print(pika.__version__)']);
    return stdout.trim();
  } catch {
    return undefined;
  }
}

/** Runs the Python script in one mode and parses its JSON line. */
async function python<T>(...args: string[]): Promise<T> {
  const { stdout } = await run(PYTHON, [SCRIPT, ...args], { timeout: 120_000 });
  const line = stdout.trim().split('\n').at(-1) ?? '';
  return JSON.parse(line) as T;
}

/** The long-running Python responder; resolves once it consumes. */
function startPythonResponder(url: string): Promise<ChildProcess> {
  const child = spawn(PYTHON, [SCRIPT, 'respond', url, PY_RESPONDER], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  return new Promise((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (c: string) => c.includes('ready') && resolve(child));
    child.once('exit', (code) => reject(new Error(`the Python responder exited with ${code}: ${stderr.slice(-500)}`)));
  });
}

class TsEchoClient extends GenericProducer {
  static override eks = [[GenericApplicationExchange, `${TS_RESPONDER}/rr`]] as const;
}

const pika = await pikaVersion();
if (pika === undefined) {
  skip('python', `python3-pika is not importable by ${PYTHON}, so there is no Python Postage baseline (Debian: apt-get install python3-pika)`);
} else {
  await withVhost('postage-bench-python', async (url) => {
    const conn = await amqp.connect(url, { noDelay: true });
    const connection = new Connection({ url, clientName: 'bench python (postage)' });
    const daemon = BenchDaemon.spawn({ url }, { [`${TS_RESPONDER}.mjs`]: benchPlugin(TS_RESPONDER, 'mjs') });
    let responder: ChildProcess | undefined;
    let client: RawRpcClient | undefined;
    try {
      const pub = await conn.createConfirmChannel();
      await daemon.ready();
      client = await RawRpcClient.open(conn);
      await waitForStats(client, TS_RESPONDER, () => true, 30_000);
      responder = await startPythonResponder(url);
      const drainer = new DaemonDrainer(daemon, pub, client, 'mjs', 'ts-sink');
      const producer = new TsEchoClient({ connection, fingerprint: { name: 'bench', type: 'bench' } });
      const content = hitBody();
      let k = 0;

      const pythonConsume = async (n: number): Promise<{ rate: number; cpuPerMessage: number }> => {
        const queue = `py-sink-${++k}`;
        // Python's flags for a shared queue: non-durable, auto-delete (deleted when its consumer goes).
        await pub.assertQueue(queue, { durable: false, autoDelete: true });
        await fill(pub, queue, n, content);
        const result = await python<{ count: number; rate: number; cpuPerMessage: number }>('consume', url, queue, String(n));
        if (result.count !== n) throw new Error(`the Python consumer handled ${result.count} of ${n}`);
        return result;
      };
      const oursCalls = async (n: number): Promise<number> => {
        const t0 = performance.now();
        for (let i = 0; i < n; i++) {
          const reply: MessageResult = await producer.rpcCommand('echo', { n: i }, { _timeout: 10, _max_retry: 0 });
          if (!reply.ok) throw new Error(`RPC to ${TS_RESPONDER} failed: ${reply.message}`);
        }
        return (n * 1000) / (performance.now() - t0);
      };
      const pythonCalls = async (key: string, n: number): Promise<{ rate: number; cpuPerCall: number }> => python('call', url, key, String(n));

      progress('warm-up');
      await pythonConsume(N / 10);
      await drainer.drain(N / 10);
      await pythonCalls(`${PY_RESPONDER}/rr`, CALLS / 10);
      await oursCalls(CALLS / 10);

      const rate = { python: [] as number[], ours: [] as number[] };
      const cpu = { python: [] as number[], ours: [] as number[] };
      const calls = { python: [] as number[], ours: [] as number[], pythonToDaemon: [] as number[] };
      for (let r = 0; r < ROUNDS; r++) {
        for (const side of roundOrder(['python', 'ours'] as const, r)) {
          const d = side === 'python' ? await pythonConsume(N) : await drainer.drain(N);
          rate[side].push(d.rate);
          cpu[side].push(d.cpuPerMessage);
        }
        for (const side of roundOrder(['python', 'ours', 'pythonToDaemon'] as const, r)) {
          if (side === 'ours') calls.ours.push(await oursCalls(CALLS));
          else calls[side].push((await pythonCalls(side === 'python' ? `${PY_RESPONDER}/rr` : `${TS_RESPONDER}/rr`, CALLS)).rate);
        }
        progress(
          `round ${r + 1}/${ROUNDS}: consume python ${Math.round(rate.python.at(-1)!)} msg/s, daemon ${Math.round(rate.ours.at(-1)!)} msg/s; ` +
            `calls python ${Math.round(calls.python.at(-1)!)}/s, ours ${Math.round(calls.ours.at(-1)!)}/s, python → daemon ${Math.round(calls.pythonToDaemon.at(-1)!)}/s`,
        );
      }
      const name = `Python Postage 1.2.1 shape (pika ${pika})`;
      report(
        'python',
        [
          pairedRow({ metric: `consume ${N} msgs, each at its defaults`, unit: 'msg/s', baselineName: `${name}, prefetch 1, ack each`, baseline: rate.python, ours: rate.ours, goal: { of: 'ratio', op: '>=', value: 3 }, note: 'ours: a plugin in ./bin/postaged at its defaults (prefetch 50)' }),
          pairedRow({ metric: 'consumer CPU per message, each at its defaults', unit: 'µs', baselineName: name, baseline: cpu.python, ours: cpu.ours, note: 'diagnostic: CPU of the consuming process' }),
          pairedRow({ metric: `RPC calls/s, one in flight (${CALLS} sequential calls)`, unit: 'calls/s', baselineName: `${name}, fresh reply queue per call`, baseline: calls.python, ours: calls.ours, goal: { of: 'ratio', op: '>=', value: 5 }, note: 'ours: GenericProducer.rpcCommand → plugin in ./bin/postaged at its defaults' }),
          pairedRow({ metric: 'RPC calls/s, Python caller → daemon plugin', unit: 'calls/s', baselineName: `${name} both sides`, baseline: calls.python, ours: calls.pythonToDaemon, note: 'diagnostic: Python caller on both; the responder alone changes' }),
        ],
        { pika, python: PYTHON, messages: N, calls: CALLS, rounds: ROUNDS },
      );
    } finally {
      responder?.kill();
      await client?.close();
      await daemon.stop();
      await connection.close('bench done');
      await conn.close().catch(() => undefined);
    }
  });
}
