/**
 * Secrets of the configuration: never printed (`--print-config`) and scrubbed from logs.
 *
 * - `broker.password`, the password of every `broker.url`, the signing secrets;
 * - per-application `settings` values whose keys look secret (`password`, `secret`, `token`,
 *   `apiKey`, `credentials`, …): `--print-config` replaces them and says it did;
 * - in logs, each secret is scrubbed as written, URL-encoded and JSON-escaped (a password
 *   with a quote or a backslash appears escaped in a JSON log line); one shorter than four
 *   characters only where it stands alone between separators, since scrubbing every "ab"
 *   would mangle every log line.
 */
import fs from 'node:fs';
import { readSigningKeys, redactUrl } from 'postage/internal';
import type { DaemonConfig } from './config.js';

/** Keys of the secrets, redacted everywhere they could be printed. */
export const SECRET_KEYS = ['broker.password', 'broker.url'] as const;

/** A settings key that looks like it holds a secret. */
export const SECRET_SETTING = /pass(word|wd|phrase)?|secret|token|api[-_]?key|private[-_]?key|credential|auth/i;

/** The configuration with every secret replaced, and the keys that were (for `--print-config`). */
export function redactConfig(config: Readonly<DaemonConfig>): { config: DaemonConfig; redacted: string[] } {
  const copy = JSON.parse(JSON.stringify(config)) as DaemonConfig;
  const redacted: string[] = [];
  if (copy.broker.password !== 'guest') redacted.push('broker.password');
  copy.broker.password = '***';
  if (copy.broker.url.some((u) => redactUrl(u) !== u)) redacted.push('broker.url (passwords)');
  copy.broker.url = copy.broker.url.map(redactUrl);
  for (const [name, app] of Object.entries(copy.apps)) {
    if (app.settings) redactSettings(app.settings, `apps.${name}.settings`, redacted);
  }
  return { config: copy, redacted };
}

/** Replaces, in place, every value under a secret-looking key. */
function redactSettings(node: Record<string, unknown>, at: string, redacted: string[]): void {
  for (const [k, v] of Object.entries(node)) {
    if (SECRET_SETTING.test(k)) {
      node[k] = '***';
      redacted.push(`${at}.${k}`);
    } else if (v !== null && typeof v === 'object' && !Array.isArray(v)) redactSettings(v as Record<string, unknown>, `${at}.${k}`, redacted);
  }
}

/** Every secret string of the configuration (and the signing secrets of the environment). */
export function secretsOf(config: Readonly<DaemonConfig>, env: NodeJS.ProcessEnv = process.env): string[] {
  const secrets = new Set<string>();
  if (config.broker.password !== 'guest') secrets.add(config.broker.password);
  for (const url of config.broker.url) {
    try {
      const u = new URL(url);
      if (u.password) secrets.add(decodeURIComponent(u.password));
    } catch {
      // Not parseable: the format check already refused it.
    }
  }
  try {
    if (config.security.signingKeyFile) for (const k of readSigningKeys(config.security.signingKeyFile)) secrets.add(k);
  } catch {
    // The configuration check reports an unreadable key file.
  }
  if (env['POSTAGE_SIGNING_KEY']) secrets.add(env['POSTAGE_SIGNING_KEY']);
  const walk = (node: unknown): void => {
    if (node === null || typeof node !== 'object') return;
    for (const [k, v] of Object.entries(node)) {
      if (SECRET_SETTING.test(k) && typeof v === 'string') secrets.add(v);
      else walk(v);
    }
  };
  for (const app of Object.values(config.apps)) walk(app.settings);
  secrets.delete('');
  return [...secrets];
}

/** The forms a secret can take in a log line: as written, URL-encoded, JSON-escaped. */
export function secretForms(secret: string): string[] {
  const forms = new Set([secret, encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1), JSON.stringify(JSON.stringify(secret).slice(1, -1)).slice(1, -1)]);
  return [...forms].sort((a, b) => b.length - a.length);
}

/** A function that scrubs every secret, in every form, from a line. */
export function scrubber(secrets: readonly string[]): (line: string) => string {
  const long = secrets.filter((s) => s.length >= 4).flatMap(secretForms);
  const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const short = secrets.filter((s) => s.length < 4).flatMap(secretForms);
  // Short ones only between separators (start, end, quotes, spaces, : @ / = , ; & ?).
  const shortRe = short.length > 0 ? new RegExp(`(^|["'\\s:@/=,;&?])(${short.map(escape).join('|')})(?=$|["'\\s:@/=,;&?])`, 'g') : undefined;
  return (line) => {
    let out = line;
    for (const s of long) out = out.split(s).join('***');
    if (shortRe) out = out.replace(shortRe, '$1***');
    return out;
  };
}

/**
 * Why a file holding secrets is worth a warning: readable by users other than its owner.
 * `undefined` when it is fine (or cannot be read; the load reports that).
 */
export function exposedSecretFile(file: string): string | undefined {
  try {
    const st = fs.statSync(file);
    if (st.mode & 0o044) return `${file} holds secrets and is readable by ${st.mode & 0o004 ? 'every user' : 'its group'} (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}): chmod 600 it`;
  } catch {
    // reported elsewhere
  }
  return undefined;
}
