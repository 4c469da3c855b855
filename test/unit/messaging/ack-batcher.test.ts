import test from 'ava';
import type { Channel, ConsumeMessage } from 'amqplib';
import { AckBatcher } from '../../../dist/lib/messaging/ack-batcher.js';

/** A channel that records the acks it is asked to send. */
function recorder(): { channel: Channel; sent: string[] } {
  const sent: string[] = [];
  const channel = {
    ack: (m: ConsumeMessage, multiple = false) => sent.push(`${multiple ? 'ack*' : 'ack'} ${m.fields.deliveryTag}`),
    reject: (m: ConsumeMessage, requeue = true) => sent.push(`reject ${m.fields.deliveryTag} ${requeue}`),
  } as unknown as Channel;
  return { channel, sent };
}

const msg = (tag: number) => ({ fields: { deliveryTag: tag } }) as ConsumeMessage;
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

test('acks wait for the end of the turn until half the prefetch window is settled, then go out at once', async (t) => {
  const { channel, sent } = recorder();
  const acks = new AckBatcher(channel, 10);
  const messages = [1, 2, 3, 4, 5, 6].map(msg);
  for (const m of messages) acks.track(m);
  for (const m of messages.slice(0, 4)) acks.ack(m);
  t.deepEqual(sent, []);
  acks.ack(messages[4]!);
  t.deepEqual(sent, ['ack* 5']);
  acks.ack(messages[5]!);
  t.deepEqual(sent, ['ack* 5']);
  await nextTurn();
  t.deepEqual(sent, ['ack* 5', 'ack* 6']);
});

test('at prefetch 1 every ack goes out at once; with no window, at the end of the turn', async (t) => {
  const one = recorder();
  const a = new AckBatcher(one.channel, 1);
  a.track(msg(1));
  a.ack(msg(1));
  t.deepEqual(one.sent, ['ack* 1']);
  const unlimited = recorder();
  const b = new AckBatcher(unlimited.channel, 0);
  for (const tag of [1, 2, 3]) b.track(msg(tag));
  for (const tag of [1, 2, 3]) b.ack(msg(tag));
  t.deepEqual(unlimited.sent, []);
  await nextTurn();
  t.deepEqual(unlimited.sent, ['ack* 3']);
});

test('a batch sent early never covers a delivery still open', async (t) => {
  const { channel, sent } = recorder();
  const acks = new AckBatcher(channel, 4);
  for (const tag of [1, 2, 3]) acks.track(msg(tag));
  acks.ack(msg(2));
  acks.ack(msg(3));
  t.deepEqual(sent, ['ack 2', 'ack 3']);
  acks.ack(msg(1));
  await nextTurn();
  t.deepEqual(sent, ['ack 2', 'ack 3', 'ack* 1']);
});
