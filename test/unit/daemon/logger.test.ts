import { PassThrough } from 'node:stream';
import test from 'ava';
import { createLogger, flushLogs } from '../../../daemon/logger.js';

function capture(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (c: Buffer) => (text += c.toString()));
  return { stream, text: () => text };
}

test('JSON lines with pid, host and the application of a child logger', async (t) => {
  const out = capture();
  const logger = createLogger({ level: 'info', format: 'json', stream: out.stream, host: 'h1' });
  logger.child({ app: 'echo' }).info('hello', { n: 1 });
  logger.debug('hidden');
  await flushLogs();
  const lines = out.text().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.is(lines.length, 1);
  t.like(lines[0], { message: 'hello', level: 'info', app: 'echo', host: 'h1', pid: process.pid, n: 1 });
  t.truthy(lines[0]!['timestamp']);
});

test('auto: readable on a terminal, JSON otherwise', async (t) => {
  const tty = capture();
  createLogger({ level: 'info', format: 'auto', isTTY: true, stream: tty.stream }).child({ app: 'rpc-echo' }).info('ready', { x: 1 });
  const pipe = capture();
  createLogger({ level: 'info', format: 'auto', isTTY: false, stream: pipe.stream }).info('ready');
  await flushLogs();
  t.regex(tty.text(), /^\d\d:\d\d:\d\d\.\d{3} .*info.* \[rpc-echo\] ready \{"x":1\}\n$/);
  t.notThrows(() => JSON.parse(pipe.text()));
});

test('secrets are scrubbed from every field of every line', async (t) => {
  const out = capture();
  const logger = createLogger({ level: 'info', format: 'json', stream: out.stream, secrets: ['hunter2', encodeURIComponent('p@ss')] });
  logger.info('url amqp://u:hunter2@h', { nested: { password: 'hunter2' }, url: `amqp://u:${encodeURIComponent('p@ss')}@h` });
  await flushLogs();
  t.false(out.text().includes('hunter2'));
  t.false(out.text().includes('p%40ss'));
  t.regex(out.text(), /amqp:\/\/u:\*\*\*@h/);
});
