/**
 * Replies only where they belong: with strictReplies, a responder answers only to a caller's
 * reply queue (direct reply-to, or a server-named amq.gen-… queue as Python callers declare),
 * and refuses (and counts) a reply_to naming any other queue, so that a caller cannot make it
 * publish chosen content into someone else's queue. Off by default.
 */
import amqp from 'amqplib';
import { GenericApplicationExchange, GenericProducer, JsonEncoder, RpcCommand, type Connection } from 'postage';
import { brokerTest as test, freshVhost } from '../helpers/broker.js';
import { Recorder, startProcessor } from '../helpers/apps.js';
import { waitFor } from '../helpers/wait-for.js';

function caller(connection: Connection): GenericProducer {
  class P extends GenericProducer {
    static override eks = [[GenericApplicationExchange, 'strict/rr']] as const;
  }
  return new P({ connection });
}

test('strictReplies: answers direct reply-to and amq.gen- queues, refuses any other reply_to and counts it', async (t) => {
  const { url, connection } = await freshVhost(t);
  const app = await startProcessor(t, new Recorder({ connection, name: 'strict', host: 'H', pid: 1, strictReplies: true }));
  // A library call (direct reply-to) is answered.
  const ping = await caller(connection).rpcCommand('ping', {}, { _timeout: 10, _max_retry: 0 });
  t.true(ping.ok);
  // A Python-style call (exclusive server-named queue) is answered.
  const queue = await caller(connection).rpcQueue(new RpcCommand('ping'));
  t.regex(queue, /^amq\.gen-/);
  t.true((await caller(connection).fetchResult(queue, 10)).ok);

  // A reply_to naming a victim's queue: nothing lands there.
  const raw = await amqp.connect(url);
  t.teardown(() => raw.close());
  const ch = await raw.createConfirmChannel();
  await ch.assertQueue('victim', { durable: false });
  const body = new RpcCommand('ping').setFingerprint({ name: 'attacker' }).body;
  ch.publish(GenericApplicationExchange.name, 'strict/rr', new JsonEncoder().encode(body), { replyTo: 'victim', contentType: 'application/json' });
  await ch.waitForConfirms();
  await waitFor('refused and counted', () => app.stats.refused['reply-target'] === 1);
  // A barrier: the next call is answered after the refused one was handled.
  t.true((await caller(connection).rpcCommand('ping', {}, { _timeout: 10, _max_retry: 0 })).ok);
  t.is((await ch.checkQueue('victim')).messageCount, 0, 'nothing was published into the victim queue');
});

test('without strictReplies (the default) a reply goes wherever reply_to says, as in Python Postage', async (t) => {
  const { url, connection } = await freshVhost(t);
  await startProcessor(t, new Recorder({ connection, name: 'lax', host: 'H', pid: 1 }));
  const raw = await amqp.connect(url);
  t.teardown(() => raw.close());
  const ch = await raw.createConfirmChannel();
  await ch.assertQueue('named-reply-queue', { durable: false });
  ch.publish(GenericApplicationExchange.name, 'lax/rr', new JsonEncoder().encode(new RpcCommand('ping').body), { replyTo: 'named-reply-queue', contentType: 'application/json' });
  await ch.waitForConfirms();
  await waitFor('answered into the named queue', async () => (await ch.checkQueue('named-reply-queue')).messageCount === 1);
  t.pass();
});
