/**
 * The floor of the restart benches (issue 14): a fresh `node` that loads amqplib, connects,
 * declares and consumes 8 queues one after another, then exits. bench/restart.bench.ts
 * times it from spawn to exit; a daemon's restart cannot be much faster than this, whatever
 * it does. Prints its RSS once consuming (the floor of the memory rows).
 *
 * Usage: node restart-floor.js AMQP_URL
 */
import amqp from 'amqplib';

const QUEUES = 8;
const url = process.argv[2];
if (url === undefined) throw new Error('usage: restart-floor.js AMQP_URL');

const conn = await amqp.connect(url, { noDelay: true });
const ch = await conn.createChannel();
for (let i = 0; i < QUEUES; i++) {
  const { queue } = await ch.assertQueue('', { exclusive: true, autoDelete: true });
  await ch.consume(queue, () => undefined, { noAck: true });
}
process.stdout.write(`${JSON.stringify({ rss: process.memoryUsage.rss() })}\n`);
await conn.close();
