/**
 * Everything `postage` prints: aligned tables and readable values for people, one JSON
 * document for scripts (`--json`), and the shape of a reply in both.
 */
import type { MessageResult } from 'postage';

/**
 * Text that came from a remote reply, made safe for a terminal: control characters (ESC, CSI,
 * carriage return, bell, …) are shown escaped (`\u001b`), so that a responder cannot move the
 * cursor, rewrite lines or set the title of the operator's terminal. Newlines and tabs stay.
 */
export function safe(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A column of a table; numbers read best aligned right. */
export interface Column {
  header: string;
  align?: 'left' | 'right';
}

/** Renders rows as an aligned table with a header line (two spaces between columns). */
export function table(columns: readonly Column[], rows: ReadonlyArray<readonly string[]>): string {
  // Every cell may hold a remote name, state or error: one line, no control characters.
  rows = rows.map((r) => r.map((cell) => safe(cell).replace(/[\n\t]/g, ' ')));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    columns
      .map((c, i) => {
        const cell = cells[i] ?? '';
        const w = widths[i] ?? 0;
        return c.align === 'right' ? cell.padStart(w) : cell.padEnd(w);
      })
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...rows.map(line)].join('\n') + '\n';
}

/** `93784` → `1d2h`, `312` → `5m12s`, `42.5` → `42s`. */
export function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '-';
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d${h}h`;
  if (h > 0) return `${h}h${m}m`;
  if (m > 0) return `${m}m${s % 60}s`;
  return `${s}s`;
}

/** Bytes in binary units: `64_000_000` → `61.0 MiB`. */
export function bytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

export function percent(n: number): string {
  return Number.isFinite(n) ? `${n.toFixed(1)}%` : '-';
}

/** Shown for a reply that carries no fingerprint (Python Postage's replies carry an empty one). */
export const NO_FINGERPRINT = '(reply without fingerprint)';

/** Who answered: `name:pid@host` from the reply's fingerprint (the instance key), or that it did not say. */
export function responder(result: MessageResult): string {
  const fp = result.body.fingerprint;
  if (!fp['name'] && !fp['pid'] && !fp['host']) return NO_FINGERPRINT;
  return safe(`${fp['name'] ?? '?'}:${fp['pid'] ?? '?'}@${fp['host'] ?? '?'}`);
}

/** A reply as scripts see it with `--json`. */
export interface ReplyJson {
  from: Record<string, string>;
  ok: boolean;
  type: string;
  value: unknown;
  message: string;
}

export function replyJson(result: MessageResult): ReplyJson {
  return { from: { ...result.body.fingerprint }, ok: result.ok, type: result.resultType, value: result.value, message: result.message };
}

/** A value for people: strings as they are, anything else as indented JSON. */
export function showValue(value: unknown): string {
  // JSON.stringify escapes control characters inside strings already; a bare string does not.
  return typeof value === 'string' ? safe(value) : JSON.stringify(value, null, 2) ?? String(value);
}

/** One line describing a failed reply. */
export function showFailure(result: MessageResult): string {
  return safe(result.resultType === 'exception' ? `exception ${String(result.value)}: ${result.message}` : `error: ${result.message}`);
}

/** Output streams, replaceable in unit tests. */
export interface Output {
  out(text: string): void;
  err(text: string): void;
}

export const stdio: Output = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
};

export function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
