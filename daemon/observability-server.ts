/**
 * The daemon's HTTP listener (opt-in, `metrics.listen`), for Prometheus and for probes:
 *
 * - `GET /metrics`: the Prometheus text format (daemon/metrics.ts);
 * - `GET /healthz`: 200 whenever it answers (the event loop runs: a blocked or wedged process
 *   does not answer at all, which is what a liveness probe is for);
 * - `GET /readyz`: 200 when the daemon runs, is connected and every enabled application
 *   consumes, else 503; both with a JSON body saying why (daemon/readiness.ts).
 *
 * It answers from the first moment of a generation (readiness says `starting` until the
 * plugins run) and closes last, after the broker connection, so that a probe during a drain
 * sees 503, not a refused connection. A re-exec closes it; the next generation opens it again
 * (a probe that lands in between, ~0.3 s, fails once).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'postage';
import type { ListenAddress } from './listen-address.js';
import type { Readiness } from './readiness.js';

export interface ObservabilityServerOptions {
  listen: ListenAddress;
  metrics(): Promise<{ contentType: string; body: string }>;
  readiness(): Readiness;
  /** What /healthz says beside `status: ok`. */
  health(): Record<string, unknown>;
  logger: Logger;
}

/** @internal */
export class ObservabilityServer {
  readonly #server: http.Server;

  constructor(private readonly options: ObservabilityServerOptions) {
    this.#server = http.createServer((req, res) => void this.#answer(req, res));
    // Probes and scrapes are short; an idle keep-alive socket must not hold a re-exec up.
    this.#server.keepAliveTimeout = 5_000;
  }

  /** Binds; resolves with the address bound (port 0: the one the OS chose). */
  listen(): Promise<AddressInfo> {
    const { host, port } = this.options.listen;
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.#server.once('error', onError);
      this.#server.listen({ host, port }, () => {
        this.#server.off('error', onError);
        this.#server.on('error', (err) => this.options.logger.warn('metrics listener error', { reason: err.message }));
        resolve(this.#server.address() as AddressInfo);
      });
    });
  }

  async #answer(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return this.#send(res, 405, 'application/json', JSON.stringify({ error: 'only GET and HEAD' }), { allow: 'GET, HEAD' });
    try {
      switch (path) {
        case '/metrics': {
          const { contentType, body } = await this.options.metrics();
          return this.#send(res, 200, contentType, body);
        }
        case '/healthz':
          return this.#send(res, 200, 'application/json', JSON.stringify({ status: 'ok', ...this.options.health() }));
        case '/readyz': {
          const r = this.options.readiness();
          return this.#send(res, r.ready ? 200 : 503, 'application/json', JSON.stringify({ status: r.ready ? 'ready' : 'not ready', ...r }));
        }
        default:
          return this.#send(res, 404, 'application/json', JSON.stringify({ error: `no ${path}: try /metrics, /healthz or /readyz` }));
      }
    } catch (err) {
      this.options.logger.warn('metrics request failed', { path, reason: (err as Error).message });
      return this.#send(res, 500, 'application/json', JSON.stringify({ error: (err as Error).message }));
    }
  }

  #send(res: http.ServerResponse, status: number, contentType: string, body: string, headers: Record<string, string> = {}): void {
    res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body), ...headers });
    res.end(res.req.method === 'HEAD' ? undefined : body);
  }

  /** Stops listening and drops idle connections; resolves once closed. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }
}
