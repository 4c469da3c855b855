/** Running library processors and applications inside a test, stopped at teardown. */
import type { ExecutionContext } from 'ava';
import { GenericApplication, GenericApplicationExchange, GenericProducer, MessageHandler, MicroScheduler, type Connection, type MessageProcessor } from 'postage';
import { waitFor } from './wait-for.js';

/** Starts a processor on its own scheduler and waits until it consumes. Closed at teardown. */
export async function startProcessor<P extends MessageProcessor>(t: ExecutionContext, processor: P): Promise<P> {
  const scheduler = new MicroScheduler();
  scheduler.add(processor);
  const done = scheduler.run();
  t.teardown(async () => {
    await processor.close('test done');
    await done;
  });
  await waitFor(`${processor.fingerprint.name} consuming`, () => processor.consuming);
  return processor;
}

/** A producer bound to the GenericApplication exchange, sending with `_key`. */
export function appProducer(connection: Connection, name = 'test-client'): GenericProducer {
  class AppProducer extends GenericProducer {
    static override eks = [[GenericApplicationExchange, 'unused']] as const;
  }
  return new AppProducer({ connection, fingerprint: { name, type: 'test' } });
}

/** An application that records every `hit` command it receives. */
export class Recorder extends GenericApplication {
  static handlers = { onHit: MessageHandler('command', 'hit') };
  readonly hits: unknown[] = [];
  onHit(content: { parameters: unknown }): void {
    this.hits.push(content.parameters);
  }
}
