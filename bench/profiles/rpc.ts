/**
 * Profiles of the RPC path, one in flight, each side alone: the client side with the library
 * client and with the raw client (both calling the raw responder), and the responder side
 * with the library responder and with the raw responder (both called by the raw client).
 * The responders are bench/rpc-responder.ts in a child process, which profiles itself on
 * request. CPU profiles and allocation samples, N sequential calls per window.
 *
 * Usage: node dist/bench/profiles/rpc.js OUT_DIR [calls = 5000]
 * Writes OUT_DIR/rpc-{client,responder}-{library,raw}.{cpuprofile,heapprofile}.
 */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';
import { Connection, GenericApplicationExchange, GenericProducer } from 'postage';
import { progress, withVhost } from '../helpers.js';
import { RawRpcClient, rpcBody } from '../raw-rpc.js';
import { APP, RAW_QUEUE, type ResponderCommand, type ResponderMessage } from '../rpc-responder.js';
import { AllocationSampler, CpuProfiler } from './cpu-profiler.js';

const [outArg = '.', callsArg] = process.argv.slice(2);
const outDir = path.resolve(outArg);
const CALLS = Number(callsArg ?? 5000);
const GAE = GenericApplicationExchange.name;

class Client extends GenericProducer {
  static override eks = [[GenericApplicationExchange, RAW_QUEUE]] as const;
}

function ask(child: ChildProcess, cmd: ResponderCommand): Promise<ResponderMessage> {
  return new Promise((resolve) => {
    child.once('message', (m: ResponderMessage) => resolve(m));
    child.send(cmd);
  });
}

await withVhost('postage-profile-rpc', async (url) => {
  const child = fork(fileURLToPath(new URL('../rpc-responder.js', import.meta.url)), [url], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  await new Promise<void>((resolve, reject) => child.once('message', (m: ResponderMessage) => ('ready' in m ? resolve() : reject(new Error(JSON.stringify(m))))));
  const conn = await amqp.connect(url, { noDelay: true });
  const connection = new Connection({ url, clientName: 'profile rpc' });
  const raw = await RawRpcClient.open(conn);
  const producer = new Client({ connection, fingerprint: { name: 'bench', type: 'bench' } });
  const request = rpcBody('echo', { n: 1 });
  const calls = {
    'client-library': async () => {
      const r = await producer.rpcCommand('echo', { n: 1 }, { _timeout: 10, _max_retry: 0 });
      if (!r.ok) throw new Error('call failed');
    },
    'client-raw': () => raw.call(GAE, RAW_QUEUE, request),
    'responder-library': () => raw.call(GAE, `${APP}/rr`, request),
    'responder-raw': () => raw.call(GAE, RAW_QUEUE, request),
  };
  const run = async (name: keyof typeof calls, n: number): Promise<number> => {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await calls[name]();
    return (performance.now() - t0) / n;
  };
  try {
    for (const name of Object.keys(calls) as Array<keyof typeof calls>) await run(name, CALLS / 5);
    for (const kind of ['cpu', 'heap'] as const) {
      for (const name of Object.keys(calls) as Array<keyof typeof calls>) {
        const file = path.join(outDir, `rpc-${name}.${kind === 'cpu' ? 'cpuprofile' : 'heapprofile'}`);
        const inChild = name.startsWith('responder');
        const profiler = kind === 'cpu' ? new CpuProfiler() : new AllocationSampler();
        if (inChild) await ask(child, { cmd: 'profile-start', kind });
        else await profiler.start();
        const ms = await run(name, CALLS);
        if (inChild) await ask(child, { cmd: 'profile-stop', file });
        else await profiler.stop(file);
        progress(`${name} (${kind}): ${(ms * 1000).toFixed(0)} µs per call`);
      }
    }
  } finally {
    child.send({ cmd: 'stop' } satisfies ResponderCommand);
    await new Promise((resolve) => child.once('exit', resolve));
    await raw.close();
    await connection.close('profile done');
    await conn.close().catch(() => undefined);
  }
});
