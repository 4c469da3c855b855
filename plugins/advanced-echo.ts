/**
 * advanced-echo: the full-body echo (Python Postage's advanced echo demo), in TypeScript
 * with decorators. `@MessageHandlerFullBody` hands the method the whole message, so it can
 * print who sent it (the sender's fingerprint: name, type, pid, host, user, vhost).
 *
 * Shared versus private queues, with two daemons running this plugin:
 *   - key `advanced-echo/rr` goes to the shared queue `advanced-echo`: ONE of them logs it
 *     (round-robin; it waits in the queue if none is running);
 *   - key `advanced-echo` goes to each instance's private queue `advanced-echo:PID@HOST`:
 *     EVERY running instance logs it.
 */
import { GenericApplication, MessageHandlerFullBody, type MessageBody } from 'postage';

export default class AdvancedEcho extends GenericApplication {
  static override appName = 'advanced-echo';

  @MessageHandlerFullBody('command', 'echo')
  onEcho(body: MessageBody): void {
    const { name, type, pid, host, user } = body.fingerprint;
    const parameters = (body.content as { parameters?: unknown }).parameters;
    this.logger.info('echo', { text: parameters, from: `${name} (${type}) pid ${pid} on ${host} as ${user}` });
  }
}
