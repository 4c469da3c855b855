/**
 * The address of the metrics and health listener (`metrics.listen`): `PORT`, `HOST:PORT` or
 * `[IPv6]:PORT`; empty means no listener. Without a host it binds to 127.0.0.1 only: the
 * metrics name every application, and nothing outside the machine should see them unless
 * the configuration says so (`0.0.0.0:9464` in a container, for Prometheus and the probes).
 * Port 0 takes any free port (the log line `metrics listening` says which).
 */

/** Where to listen. */
export interface ListenAddress {
  host: string;
  port: number;
}

const FORM = /^(?:(?:\[([0-9a-fA-F:.]+)\]|([^\s:[\]]+)):)?(\d{1,5})$/;

/** The address of a `metrics.listen` value; undefined for '' (off); throws naming what is wrong. */
export function parseListen(value: string): ListenAddress | undefined {
  const text = value.trim();
  if (text === '') return undefined;
  const m = FORM.exec(text);
  if (!m) throw new Error('must be PORT, HOST:PORT or [IPv6]:PORT (e.g. 9464, 0.0.0.0:9464, [::]:9464), or empty for no listener');
  const port = Number(m[3]);
  if (port > 65535) throw new Error('the port must be from 0 to 65535');
  return { host: m[1] ?? m[2] ?? '127.0.0.1', port };
}
