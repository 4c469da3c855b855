/**
 * Summarises a V8 CPU profile (`node --cpu-prof`, `.cpuprofile`): self time by function and
 * by file, and inclusive time by function, as percentages of the sampled time; or a sampling
 * heap profile (`--heap-prof`, `.heapprofile`): bytes by allocating function and file. The
 * project's own files (dist/lib, dist/daemon) are marked. How docs/benchmarks.md's profiles
 * were read.
 *
 * Usage: node dist/bench/profile-summary.js FILE [top = 25] [only = substring of the URL to
 * restrict the inclusive table, e.g. dist/lib; "" for all] [per = divide by this count, e.g.
 * the messages handled, to print µs or bytes per message]
 */
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}
interface HeapNode {
  callFrame: CallFrame;
  selfSize: number;
  children: HeapNode[];
}

function shortUrl(url: string): string {
  if (url === '') return '';
  const m = /(dist\/(?:lib|daemon|bench|cli)\/.*)$/.exec(url) ?? /node_modules\/(.*)$/.exec(url);
  if (m) return m[1]!;
  return url.replace(/^file:\/\//, '').replace(/^node:/, 'node:');
}

function key(f: CallFrame): string {
  const where = shortUrl(f.url);
  return `${f.functionName || '(anonymous)'}${where ? ` ${where}:${f.lineNumber + 1}` : ''}`;
}

const [file, topArg, onlyArg, perArg] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: profile-summary.js FILE [top] [url-substring] [per]\n');
  process.exit(2);
}
const top = Number(topArg ?? 25);
const only = onlyArg || undefined;
const per = Number(perArg ?? 0);
const ours = (k: string): string => (/dist\/(lib|daemon)\//.test(k) ? ' ◀ ours' : '');
const data = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile | { head: HeapNode };

function table(title: string, m: Map<string, number>, total: number, unit: (v: number) => string): void {
  process.stdout.write(`\n${title}\n`);
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    process.stdout.write(`${((100 * v) / total).toFixed(1).padStart(5)}% ${unit(v)}  ${k}${ours(k)}\n`);
  }
}
const add = (m: Map<string, number>, k: string, v: number): void => {
  m.set(k, (m.get(k) ?? 0) + v);
};
const fileOf = (f: CallFrame): string => shortUrl(f.url) || f.functionName;

if ('head' in data) {
  const self = new Map<string, number>();
  const byFile = new Map<string, number>();
  let total = 0;
  const walk = (n: HeapNode): void => {
    total += n.selfSize;
    add(self, key(n.callFrame), n.selfSize);
    add(byFile, fileOf(n.callFrame), n.selfSize);
    for (const c of n.children) walk(c);
  };
  walk(data.head);
  const unit = (v: number): string => (per > 0 ? `${(v / per).toFixed(0).padStart(7)} B/unit` : `${(v / 2 ** 20).toFixed(1).padStart(7)} MiB`);
  process.stdout.write(`${file}: ${(total / 2 ** 20).toFixed(1)} MiB sampled${per > 0 ? `, ${(total / per).toFixed(0)} bytes per unit over ${per}` : ''}\n`);
  const oursBytes = [...byFile].filter(([k]) => /^dist\/(lib|daemon)\//.test(k)).reduce((s, [, v]) => s + v, 0);
  process.stdout.write(`allocated by the project's own files (dist/lib, dist/daemon): ${((100 * oursBytes) / total).toFixed(1)}%\n`);
  table('bytes by file', byFile, total, unit);
  table('bytes by allocating function', self, total, unit);
} else {
  const profile = data;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const selfByFile = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let total = 0;
  let idle = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    const node = byId.get(id)!;
    if (node.callFrame.functionName === '(idle)') {
      idle += dt;
      return;
    }
    total += dt;
    add(self, key(node.callFrame), dt);
    add(selfByFile, fileOf(node.callFrame), dt);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const frame = byId.get(cur)!.callFrame;
      if (only && !frame.url.includes(only)) continue;
      const fk = key(frame);
      if (seen.has(fk)) continue;
      seen.add(fk);
      add(inclusive, fk, dt);
    }
  });
  const unit = (v: number): string => (per > 0 ? `${(v / per).toFixed(2).padStart(7)} µs/unit` : `${(v / 1000).toFixed(0).padStart(6)} ms`);
  process.stdout.write(`${file}: ${(total / 1000).toFixed(0)} ms busy, ${(idle / 1000).toFixed(0)} ms idle${per > 0 ? `; ${(total / per).toFixed(2)} µs busy per unit over ${per}` : ''}\n`);
  const oursSelf = [...selfByFile].filter(([k]) => /^dist\/(lib|daemon)\//.test(k)).reduce((s, [, v]) => s + v, 0);
  process.stdout.write(`self time in the project's own files (dist/lib, dist/daemon): ${((100 * oursSelf) / total).toFixed(1)}%\n`);
  table('self time by file', selfByFile, total, unit);
  table('self time by function', self, total, unit);
  table(`inclusive time by function${only ? ` (frames whose URL contains ${only})` : ''}`, inclusive, total, unit);
}
