/**
 * The daemon's own application (default name `postaged`): `ping` (inherited), `status`, and
 * the library's default `quit` and `restart`, which the daemon turns into stopping or
 * re-exec'ing the whole process (daemon/daemon.ts). Its unique queue is also bound to
 * `#daemons`, so `postage ps` finds every daemon on the vhost.
 */
import { GenericApplication, MessageResult, RpcHandler, type ApplicationOptions, type DaemonStatus, type ReplyFunc } from 'postage';

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
