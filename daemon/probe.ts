/**
 * `postaged-probe`: asks a running postaged's listener whether it is ready (`/readyz`) or
 * alive (`--live`: `/healthz`), for a container's HEALTHCHECK or any supervisor that runs a
 * command rather than an HTTP request (the image has no curl). Exit 0: 200; exit 1: anything
 * else, no answer within the timeout (a stopped or wedged daemon), or no listener configured.
 *
 *   postaged-probe [--live] [LISTEN]     LISTEN: metrics.listen's form; default: $POSTAGED_METRICS_LISTEN
 *
 * A listener bound to every address (0.0.0.0, ::) is asked on the loopback.
 */
import http from 'node:http';
import { parseListen } from './listen-address.js';

/** The whole answer must come within this; HEALTHCHECK's own timeout is longer. */
const TIMEOUT_MS = 5000;

function probe(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  const live = argv.includes('--live');
  const listen = argv.find((a) => !a.startsWith('--')) ?? env['POSTAGED_METRICS_LISTEN'] ?? '';
  let address;
  try {
    address = parseListen(listen);
  } catch (err) {
    process.stderr.write(`postaged-probe: ${JSON.stringify(listen)}: ${(err as Error).message}\n`);
    return Promise.resolve(1);
  }
  if (!address) {
    process.stderr.write('postaged-probe: no listener: give metrics.listen (or set POSTAGED_METRICS_LISTEN)\n');
    return Promise.resolve(1);
  }
  const host = address.host === '0.0.0.0' ? '127.0.0.1' : address.host === '::' ? '::1' : address.host;
  const path = live ? '/healthz' : '/readyz';
  return new Promise((resolve) => {
    const req = http.get({ host, port: address.port, path, timeout: TIMEOUT_MS }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        process.stdout.write(`${res.statusCode ?? '?'} ${body}\n`);
        resolve(res.statusCode === 200 ? 0 : 1);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    req.on('error', (err) => {
      process.stdout.write(`no answer from http://${host.includes(':') ? `[${host}]` : host}:${address.port}${path}: ${err.message}\n`);
      resolve(1);
    });
  });
}

process.exitCode = await probe(process.argv.slice(2), process.env);
