import test from 'ava';
import { Connection, GenericProducer, PostageError, redactUrl } from 'postage';

test('redactUrl hides the password, keeps the rest', (t) => {
  t.is(redactUrl('amqp://bob:s3cr%40t@host:5672/v'), 'amqp://bob:***@host:5672/v');
  t.is(redactUrl('amqp://host/v'), 'amqp://host/v');
});

test('URLs are built from options with every part encoded, one per host', (t) => {
  const c = new Connection({ hosts: ['a', 'b:5673'], port: 5672, vhost: '/', user: 'u', password: 'p:@%/#' });
  t.deepEqual(c.urls, ['amqp://u:p%3A%40%25%2F%23@a:5672/%2F', 'amqp://u:p%3A%40%25%2F%23@b:5673/%2F']);
});

test('an unreachable broker is a coded error that names every URL tried, without the password', async (t) => {
  const c = new Connection({ url: ['amqp://guest:s3cret@127.0.0.1:1/', 'amqp://guest:s3cret@127.0.0.1:2/'] });
  const err = await t.throwsAsync(c.ready());
  t.is((err as PostageError).code, 'POSTAGE_ERR_BROKER_UNREACHABLE');
  t.regex(err?.message ?? '', /127\.0\.0\.1:1/);
  t.regex(err?.message ?? '', /127\.0\.0\.1:2/);
  t.notRegex(err?.message ?? '', /s3cret/);
  await c.close();
});

test('use after close throws POSTAGE_ERR_CLOSED naming what and why', async (t) => {
  const c = new Connection({ url: 'amqp://127.0.0.1:1/' });
  await c.close('quit');
  const err = await t.throwsAsync(new GenericProducer({ connection: c }).message_x({}));
  t.is((err as PostageError).code, 'POSTAGE_ERR_CLOSED');
  t.regex(err?.message ?? '', /connection is closed \(quit\)/);
});

test('close is idempotent and concurrent callers share one promise', async (t) => {
  const c = new Connection({ url: 'amqp://127.0.0.1:1/' });
  const a = c.close('one');
  const b = c.close('two');
  t.is(a, b);
  await a;
  t.true(c.closed);
});
