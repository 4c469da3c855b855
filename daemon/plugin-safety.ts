/**
 * Which plugin files the daemon may load, like sshd's StrictModes: the daemon runs whatever
 * code is in its plugin folder, so a folder or a file that another user can write is a way
 * for that user to run code as the daemon. Refused (with the path and the reason):
 * - a folder or a file owned by a user other than the daemon's own or root;
 * - a folder or a file writable by its group (unless the group is the owner's private group,
 *   with no other member, as OpenSSH allows) or by everyone;
 * - a symlink that leads out of the folder (into /tmp, say);
 * - anything that is not a regular file (a FIFO, a device).
 * On by default; `strictModes: false` turns it off (docs/security.md says what that risks).
 */
import fs from 'node:fs';
import path from 'node:path';

function octal(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

/** Members and primary users of a group, from /etc/group and /etc/passwd (empty when unreadable). */
function groupUsers(gid: number): { members: string[]; primaryOf: number[] } {
  const read = (file: string): string[] => {
    try {
      return fs.readFileSync(file, 'utf8').split('\n');
    } catch {
      return [];
    }
  };
  const line = read('/etc/group').find((l) => l.split(':')[2] === String(gid));
  const members = (line?.split(':')[3] ?? '').split(',').filter(Boolean);
  const primaryOf = read('/etc/passwd')
    .map((l) => l.split(':'))
    .filter((f) => f[3] === String(gid))
    .map((f) => Number(f[2]));
  return { members, primaryOf };
}

/** Whether only the owner can be in a path's group: its private group (OpenSSH's rule). */
function privateGroup(st: fs.Stats): boolean {
  const { members, primaryOf } = groupUsers(st.gid);
  return members.length === 0 && primaryOf.length > 0 && primaryOf.every((uid) => uid === st.uid);
}

/** Why `st` (of `what`) can be written by someone other than the daemon's user or root, if it can. */
export function writableByOthers(what: string, st: fs.Stats, uid: number): string | undefined {
  if (st.uid !== uid && st.uid !== 0) return `${what} is owned by uid ${st.uid}, neither the daemon's user (uid ${uid}) nor root`;
  if (st.mode & 0o002) return `${what} is writable by every user (mode ${octal(st.mode)})`;
  if (st.mode & 0o020 && !privateGroup(st)) return `${what} is writable by its group (gid ${st.gid}, mode ${octal(st.mode)})`;
  return undefined;
}

function uid(): number {
  return process.getuid?.() ?? 0;
}

/** Why the plugin folder itself is unsafe, if it is. */
export function unsafeFolder(dir: string): string | undefined {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch (err) {
    return `cannot read the plugin folder (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
  }
  return writableByOthers('the plugin folder', st, uid());
}

/** Why a plugin file must not be loaded, if it must not (the folder is checked apart). */
export function unsafeFile(file: string, dir: string): string | undefined {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(file);
  } catch (err) {
    return `cannot read the file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
  }
  if (st.isSymbolicLink()) {
    let target: string;
    try {
      target = fs.realpathSync(file);
    } catch (err) {
      return `a symlink that leads nowhere (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
    }
    const folder = fs.realpathSync(dir);
    if (path.dirname(target) !== folder) return `a symlink that leads out of the plugin folder (to ${target})`;
    st = fs.statSync(target);
  }
  if (!st.isFile()) return 'not a regular file';
  return writableByOthers('the file', st, uid());
}
