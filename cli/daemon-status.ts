/**
 * The value of a daemon's `status` reply, as `ps` and `status` read it, and how it is shown.
 * A field a daemon left out is shown as `-` rather than failing the whole listing: a fleet
 * may run several versions of postaged.
 */
import type { ApplicationStatus, DaemonStatus } from 'postage';
import { bytes, duration, percent, safe, table, type Column } from './output.js';

export type { ApplicationStatus, DaemonStatus, MessageCounts } from 'postage';

const rec = (v: unknown): Record<string, unknown> => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
const num = (v: unknown): number => (typeof v === 'number' ? v : Number.NaN);
const str = (v: unknown, dflt = '-'): string => (typeof v === 'string' ? v : v === undefined || v === null ? dflt : String(v));
const strs = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : []);

/** Reads a status value; `undefined` when it is not a daemon's (no `applications` list). */
export function asDaemonStatus(value: unknown): DaemonStatus | undefined {
  const v = rec(value);
  if (!Array.isArray(v['applications'])) return undefined;
  return {
    name: str(v['name']),
    pid: num(v['pid']),
    host: str(v['host']),
    version: str(v['version']),
    uptime: num(v['uptime']),
    generation: num(v['generation']),
    restarts: num(v['restarts']),
    lastRestartReason: typeof v['lastRestartReason'] === 'string' ? v['lastRestartReason'] : null,
    startedAt: str(v['startedAt']),
    cpu: num(v['cpu']),
    memory: num(v['memory']),
    pluginDir: str(v['pluginDir']),
    applications: (v['applications'] as unknown[]).map((a) => {
      const app = rec(a);
      const c = rec(app['counts']);
      const status: ApplicationStatus = {
        name: str(app['name']),
        file: typeof app['file'] === 'string' ? app['file'] : null,
        state: str(app['state']),
        groups: strs(app['groups']),
        queues: strs(app['queues']),
        counts: {
          received: num(c['received']),
          handled: num(c['handled']),
          failed: num(c['failed']),
          rejected: num(c['rejected']),
          deadLettered: num(c['deadLettered']),
          unhandled: num(c['unhandled']),
          retried: num(c['retried']),
          timedOut: num(c['timedOut']),
          duplicates: num(c['duplicates']),
        },
      };
      if (app['error'] !== undefined && app['error'] !== null) status.error = str(app['error']);
      return status;
    }),
  };
}

const n = (v: number): string => (Number.isFinite(v) ? String(v) : '-');

/** Daemons sorted by host, then name, then pid; each daemon's own application first. */
export function sortDaemons(daemons: readonly DaemonStatus[]): DaemonStatus[] {
  return [...daemons]
    .sort((a, b) => a.host.localeCompare(b.host) || a.name.localeCompare(b.name) || a.pid - b.pid)
    .map((d) => ({ ...d, applications: [...d.applications].sort((x, y) => Number(x.file !== null) - Number(y.file !== null) || x.name.localeCompare(y.name)) }));
}

const PS_COLUMNS: Column[] = [
  { header: 'HOST' },
  { header: 'PID', align: 'right' },
  { header: 'DAEMON' },
  { header: 'UPTIME', align: 'right' },
  { header: 'RESTARTS', align: 'right' },
  { header: 'CPU', align: 'right' },
  { header: 'RSS', align: 'right' },
  { header: 'APPLICATION' },
  { header: 'STATE' },
  { header: 'RECEIVED', align: 'right' },
  { header: 'HANDLED', align: 'right' },
  { header: 'FAILED', align: 'right' },
  { header: 'GROUPS' },
];

/** An application on a daemon's host that answers `ping` but is no daemon's (e.g. a Python Postage one). */
export interface OtherApplication {
  host: string;
  pid: string;
  name: string;
}

/** Marks the applications `ps` found beside the daemons. */
export const NOT_A_DAEMON = 'not a postaged daemon';

/**
 * The `ps` table: one row per application; the daemon's columns are filled on its first
 * row only. Then the other applications that answered `ping` on a daemon's host. Failed
 * applications' errors follow the table.
 */
export function psTable(daemons: readonly DaemonStatus[], others: readonly OtherApplication[] = []): string {
  const rows: string[][] = [];
  const notes: string[] = [];
  for (const d of sortDaemons(daemons)) {
    const head = [d.host, n(d.pid), d.name, duration(d.uptime), n(d.restarts), percent(d.cpu), bytes(d.memory)];
    const apps = d.applications.length > 0 ? d.applications : [undefined];
    apps.forEach((a, i) => {
      const left = i === 0 ? head : head.map(() => '');
      if (!a) rows.push([...left, '-', '-', '', '', '', '']);
      else rows.push([...left, a.name, a.state, n(a.counts.received), n(a.counts.handled), n(a.counts.failed), a.groups.join(',')]);
      if (a?.error !== undefined) notes.push(`${a.name} in ${d.name}:${n(d.pid)}@${d.host} failed: ${a.error}`);
    });
  }
  const sorted = [...others].sort((a, b) => a.host.localeCompare(b.host) || a.name.localeCompare(b.name) || Number(a.pid) - Number(b.pid));
  for (const o of sorted) rows.push([o.host, o.pid, '-', '-', '-', '-', '-', o.name, NOT_A_DAEMON, '-', '-', '-', '']);
  if (others.length > 0) notes.push(`${others.length} application(s) answer ping but not status (${NOT_A_DAEMON}: a plain application, or a Python Postage one)`);
  return table(PS_COLUMNS, rows) + notes.map((s) => `${safe(s)}\n`).join('');
}

/**
 * The applications of the daemons' hosts that are not any daemon's: every application on a
 * host answers `ping` on `@H`; those a daemon does not list are someone else's. Python
 * Postage applications bind neither `#daemons` nor `status`, so this is how `ps` shows them.
 */
export function otherApplications(daemons: readonly DaemonStatus[], pings: readonly unknown[]): OtherApplication[] {
  const known = new Set(daemons.flatMap((d) => d.applications.map((a) => `${a.name}:${d.pid}@${d.host}`)));
  const seen = new Set<string>();
  const others: OtherApplication[] = [];
  for (const value of pings) {
    const fp = rec(value);
    const host = str(fp['host'], '');
    const pid = str(fp['pid'], '');
    const name = str(fp['name'], '');
    const id = `${name}:${pid}@${host}`;
    if (!name || known.has(id) || seen.has(id)) continue;
    seen.add(id);
    others.push({ host, pid, name });
  }
  return others;
}

const APP_COLUMNS: Column[] = [
  { header: 'APPLICATION' },
  { header: 'STATE' },
  { header: 'RECEIVED', align: 'right' },
  { header: 'HANDLED', align: 'right' },
  { header: 'FAILED', align: 'right' },
  { header: 'REJECTED', align: 'right' },
  { header: 'DEAD', align: 'right' },
  { header: 'UNHANDLED', align: 'right' },
  { header: 'GROUPS' },
  { header: 'FILE' },
];

/** The `status` view of one daemon: its process, then every application with all counts and queues. */
export function statusBlock(d: DaemonStatus): string {
  const [sorted] = sortDaemons([d]);
  const s = sorted as DaemonStatus;
  const lines = [
    `${s.name}:${n(s.pid)}@${s.host}  postaged ${s.version}`,
    `  started ${s.startedAt} (up ${duration(s.uptime)}), generation ${n(s.generation)}, restarts ${n(s.restarts)}${s.lastRestartReason ? ` (last: ${s.lastRestartReason})` : ''}`,
    `  cpu ${percent(s.cpu)}, rss ${bytes(s.memory)}, plugins ${s.pluginDir}`,
    '',
  ];
  const rows = s.applications.map((a) => [
    a.name,
    a.state,
    n(a.counts.received),
    n(a.counts.handled),
    n(a.counts.failed),
    n(a.counts.rejected),
    n(a.counts.deadLettered),
    n(a.counts.unhandled),
    a.groups.join(',') || '-',
    a.file ?? '(daemon)',
  ]);
  const queues = s.applications.map((a) => `  ${a.name}: ${a.queues.join(', ') || '-'}`);
  const errors = s.applications.filter((a) => a.error !== undefined).map((a) => `  ${a.name} failed: ${a.error}`);
  // Names, reasons and errors come from the daemon: no control characters reach the terminal.
  return safe(
    lines.join('\n') +
    table(APP_COLUMNS, rows)
      .split('\n')
      .map((l) => (l ? `  ${l}` : l))
      .join('\n') +
    `\n  queues:\n${queues.map((q) => `  ${q}`).join('\n')}\n` +
    (errors.length > 0 ? `  errors:\n${errors.map((e) => `  ${e}`).join('\n')}\n` : '')
  );
}
