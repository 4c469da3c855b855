/**
 * basic-echo: fire-and-forget echo (Python Postage's basic echo demo), in plain JavaScript.
 *
 * Plain JavaScript has no decorators: handlers are declared in `static handlers`, mapping a
 * method name to what the decorator would have been. The method gets `body.content`; a
 * command sent as `echo` with parameters "hello" arrives as `{ parameters: "hello" }`.
 *
 * Try it: ./bin/postage send basic-echo echo '"hello"'   (the daemon logs: echo {"text":"hello"})
 */
import { GenericApplication, MessageHandler } from 'postage';

export default class BasicEcho extends GenericApplication {
  static appName = 'basic-echo';

  static handlers = {
    onEcho: MessageHandler('command', 'echo'),
  };

  onEcho(content) {
    this.logger.info('echo', { text: content.parameters });
  }
}
