/** Reading a postaged's metrics and probes over HTTP in tests. */
import type { DaemonProcess } from './spawn.js';
import { waitFor } from './wait-for.js';

/** The port of the `metrics listening` line number `n` (1: the first generation's). */
export async function metricsPort(daemon: DaemonProcess, n = 1): Promise<number> {
  const line = await daemon.waitForLine('metrics listening', { count: n, timeout: 30_000 });
  return Number(line['port']);
}

/** GET on the daemon's listener: status and body. */
export async function get(port: number, path: string): Promise<{ status: number; body: string; contentType: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text(), contentType: res.headers.get('content-type') ?? '' };
}

/**
 * Asks the daemon's /readyz every 100 ms until it answers 200, `timeoutMs` at most; `last` is
 * the last answer (status and body) or the error that stood for it.
 */
export async function untilReady(port: number, timeoutMs: number): Promise<{ ready: boolean; last: string }> {
  let last = 'no answer';
  const ready = await waitFor('/readyz 200', async () => {
    const r = await get(port, '/readyz').catch((err: Error) => err);
    last = r instanceof Error ? r.message : `${r.status} ${r.body}`;
    return !(r instanceof Error) && r.status === 200;
  }, timeoutMs, 100).catch(() => false);
  return { ready, last };
}

/**
 * The samples of a Prometheus text exposition, by series: `name{a="x",b="y"}` with the labels
 * sorted by name, so a test can write the key it expects.
 */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels = [...(m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map(([, k, v]) => `${k}="${v}"`).sort();
    out.set(labels.length > 0 ? `${m[1]}{${labels.join(',')}}` : m[1]!, Number(m[3]));
  }
  return out;
}

/** Scrapes /metrics and parses it. */
export async function scrape(port: number): Promise<Map<string, number>> {
  const { status, body } = await get(port, '/metrics');
  if (status !== 200) throw new Error(`/metrics answered ${status}`);
  return parseMetrics(body);
}
