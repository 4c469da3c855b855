/**
 * The daemon's own application (default name `postaged`): `ping` (inherited), `status`, and
 * the library's default `quit` and `restart`, which the daemon turns into stopping or
 * re-exec'ing the whole process (daemon/daemon.ts). Its unique queue is also bound to
 * `#daemons`, so `postage ps` finds every daemon on the vhost.
 */
import { GenericApplication, MessageResult, RpcHandler, type ApplicationOptions, type ReplyFunc } from 'postage';
import type { AppStatus } from './host.js';

/** What RPC `status` answers, inside `MessageResult(value)` (the CLI codes against it). */
export interface DaemonStatus {
  name: string;
  pid: number;
  host: string;
  version: string;
  /** Seconds since the first generation started. */
  uptime: number;
  generation: number;
  restarts: number;
  lastRestartReason: string | null;
  /** ISO time the first generation started. */
  startedAt: string;
  /** CPU percent (pidusage). */
  cpu: number;
  /** Resident set size in bytes (pidusage). */
  memory: number;
  pluginDir: string;
  applications: AppStatus[];
}

export interface DaemonApplicationOptions extends ApplicationOptions {
  /** Builds the status value. */
  status: () => Promise<DaemonStatus>;
}

export class DaemonApplication extends GenericApplication {
  static override appName = 'postaged';
  private readonly statusOf: () => Promise<DaemonStatus>;

  constructor(options: DaemonApplicationOptions) {
    const { status, ...rest } = options;
    super(rest);
    this.statusOf = status;
  }

  @RpcHandler('command', 'status')
  async msgStatus(_content: unknown, reply: ReplyFunc): Promise<void> {
    await reply(new MessageResult(await this.statusOf()));
  }
}
