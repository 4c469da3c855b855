/**
 * rpc-echo: the RPC echo (Python Postage's RPC echo demo), in TypeScript with decorators.
 * `@RpcHandler` methods get `(content, reply)`; returning a value (or calling `reply`)
 * answers the caller with `MessageResult(value)`.
 *
 * Try it: ./bin/postage rpc rpc-echo/rr echo '"hello"'   (answers "hello")
 */
import { GenericApplication, RpcHandler } from 'postage';

export default class RpcEcho extends GenericApplication {
  static override appName = 'rpc-echo';

  @RpcHandler('command', 'echo')
  onEcho(content: { parameters?: unknown }): unknown {
    this.logger.info('rpc echo', { text: content.parameters });
    return content.parameters;
  }
}
