import os from 'node:os';
import { defaultVhost, localHostname, loginName } from '../env.js';
import { brand } from '../errors.js';

/** The six strings that identify a component on the wire. */
export interface FingerprintDict {
  name: string;
  type: string;
  pid: string;
  host: string;
  user: string;
  vhost: string;
}

/** Options of `new Fingerprint()`; anything left out is filled from the OS. */
export interface FingerprintOptions {
  name?: string;
  type?: string;
  /** Default: `process.pid`. */
  pid?: string | number;
  /** Default: `POSTAGE_HOSTNAME`, else `os.hostname()`. */
  host?: string;
  /** Default: the OS user name. */
  user?: string;
  /** Default: `POSTAGE_VHOST` or `/`. */
  vhost?: string;
}

/**
 * The fingerprint of a component: name, type, pid, host, user and vhost, all strings
 * (Python's `str()` of each). Python defaulted name and type to `str(None)`, i.e. "None".
 */
export class Fingerprint implements FingerprintDict {
  name: string;
  type: string;
  pid: string;
  host: string;
  user: string;
  vhost: string;

  constructor(options: FingerprintOptions = {}) {
    this.name = String(options.name ?? 'None');
    this.type = String(options.type ?? 'None');
    this.pid = String(options.pid ?? process.pid);
    this.host = String(options.host ?? localHostname());
    this.user = String(options.user ?? osUser());
    this.vhost = String(options.vhost ?? defaultVhost());
  }

  asDict(): FingerprintDict {
    return { name: this.name, type: this.type, pid: this.pid, host: this.host, user: this.user, vhost: this.vhost };
  }

  asTuple(): [string, string, string, string, string, string] {
    return [this.name, this.type, this.pid, this.host, this.user, this.vhost];
  }

  toJSON(): FingerprintDict {
    return this.asDict();
  }
}
brand(Fingerprint, 'Fingerprint');

function osUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    // No passwd entry (e.g. an arbitrary UID in a container): fall back like getpass does.
    return loginName() ?? String(process.getuid?.() ?? 'unknown');
  }
}
