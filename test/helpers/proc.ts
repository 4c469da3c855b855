/** What /proc says about a process's children (Linux). */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

export interface ChildProc {
  pid: number;
  comm: string;
  /** R, S, D, Z (zombie), … */
  state: string;
}

/** Every child of `pid` (of all its threads), with its name and state. */
export function childrenOf(pid: number): ChildProc[] {
  const pids = new Set<number>();
  for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
    let list = '';
    try {
      list = fs.readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8');
    } catch {
      continue; // the thread ended meanwhile
    }
    for (const p of list.trim().split(/\s+/)) if (p) pids.add(Number(p));
  }
  const children: ChildProc[] = [];
  for (const p of pids) {
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      // "pid (comm) state ...": comm may hold spaces and parentheses, so cut at the last ')'.
      const close = stat.lastIndexOf(')');
      children.push({ pid: p, comm: stat.slice(stat.indexOf('(') + 1, close), state: stat.slice(close + 2, close + 3) });
    } catch {
      // reaped between the two reads
    }
  }
  return children;
}

/** Whether this machine lets the tests start a process as PID 1 of a new PID namespace. */
export function canUnshare(): boolean {
  try {
    execFileSync('unshare', ['--pid', '--fork', '--mount-proc', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
