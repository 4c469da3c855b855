/**
 * Secrets of the configuration: never printed (`--print-config`) and scrubbed from logs.
 */
import { redactUrl } from 'postage/internal';
import type { DaemonConfig } from './config.js';

/** Keys of the secrets, redacted everywhere they could be printed. */
export const SECRET_KEYS = ['broker.password', 'broker.url'] as const;

/** The configuration with every secret replaced (for `--print-config` and logs). */
export function redactConfig(config: Readonly<DaemonConfig>): DaemonConfig {
  const copy = JSON.parse(JSON.stringify(config)) as DaemonConfig;
  copy.broker.password = '***';
  copy.broker.url = copy.broker.url.map(redactUrl);
  return copy;
}

/** Every secret string in the configuration, raw and URL-encoded, for log scrubbing. */
export function secretsOf(config: Readonly<DaemonConfig>): string[] {
  const secrets = new Set<string>();
  const add = (s: string): void => {
    if (s.length < 3) return; // scrubbing "a" would mangle every log line
    secrets.add(s);
    secrets.add(encodeURIComponent(s));
  };
  if (config.broker.password !== 'guest') add(config.broker.password);
  for (const url of config.broker.url) {
    try {
      const u = new URL(url);
      if (u.password) {
        add(u.password);
        add(decodeURIComponent(u.password));
      }
    } catch {
      // Not parseable: the format check already refused it.
    }
  }
  return [...secrets];
}
