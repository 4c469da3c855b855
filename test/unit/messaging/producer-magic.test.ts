import test from 'ava';
import { Connection, GenericProducer, MessageCommand, type Message } from 'postage';

const connection = new Connection({ url: 'amqp://127.0.0.1:1/' });
test.after.always(() => connection.close());

class Custom extends GenericProducer {
  label = 'own field';
  message_explicit(): string {
    return 'a method of its own';
  }
  build_message_built(x: number): Message {
    return new MessageCommand('built', { x: x * 2 });
  }
}

test('message_* and rpc_* resolve for any name; what the producer has is found first', (t) => {
  const p = new Custom({ connection });
  t.is(typeof p.message_anything, 'function');
  t.is(typeof p.rpc_anything, 'function');
  t.is(p.message_explicit(), 'a method of its own');
  t.is(p.label, 'own field');
  t.is((p as unknown as Record<string, unknown>)['other'], undefined);
  t.is((p as unknown as { then?: unknown }).then, undefined, 'a producer is not a thenable');
  t.false('message_anything' in p);
  t.true(p instanceof Custom && p instanceof GenericProducer && p instanceof Object);
  t.is(typeof p.toString, 'function');
  t.is(Object.getPrototypeOf(p), Custom.prototype);
});

test('a magic send on a closed connection rejects with POSTAGE_ERR_CLOSED, through the builder too', async (t) => {
  const closed = new Connection({ url: 'amqp://127.0.0.1:1/' });
  await closed.close('quit');
  const p = new Custom({ connection: closed });
  await t.throwsAsync(p.message_built(1), { code: 'POSTAGE_ERR_CLOSED' } as never);
  await t.throwsAsync(p.message_plain({}), { code: 'POSTAGE_ERR_CLOSED' } as never);
});
