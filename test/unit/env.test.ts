import test from 'ava';
import { readEnv, ENV_VARIABLES } from 'postage';

test('defaults match Python Postage', (t) => {
  const env = readEnv({});
  t.like(env, { vhost: '/', user: 'guest', password: 'guest', hosts: ['127.0.0.1'], port: 5672, urls: [], debug: false, warnings: [] });
});

test('POSTAGE_* variables are read, host lists split', (t) => {
  const env = readEnv({ POSTAGE_VHOST: 'v', POSTAGE_USER: 'u', POSTAGE_PASSWORD: 'p', POSTAGE_HOST: 'a, b', POSTAGE_PORT: '5673', POSTAGE_DEBUG_MODE: 'TRUE', POSTAGE_URL: 'amqp://x,amqp://y' });
  t.like(env, { vhost: 'v', user: 'u', password: 'p', hosts: ['a', 'b'], port: 5673, debug: true, urls: ['amqp://x', 'amqp://y'] });
});

test('deprecated POSTAGE_RMQ_* are honoured with a warning, and lose to the new names', (t) => {
  const old = readEnv({ POSTAGE_RMQ_USER: 'old-u', POSTAGE_RMQ_PASSWORD: 'old-p' });
  t.is(old.user, 'old-u');
  t.is(old.password, 'old-p');
  t.is(old.warnings.length, 2);
  t.regex(old.warnings[0] ?? '', /POSTAGE_RMQ_USER is deprecated: use POSTAGE_USER/);
  const both = readEnv({ POSTAGE_RMQ_USER: 'old-u', POSTAGE_USER: 'new-u' });
  t.is(both.user, 'new-u');
  t.deepEqual(both.warnings, []);
});

test('every variable read is documented', (t) => {
  const names = ENV_VARIABLES.map((v) => v.name);
  for (const name of ['POSTAGE_VHOST', 'POSTAGE_USER', 'POSTAGE_PASSWORD', 'POSTAGE_HOST', 'POSTAGE_PORT', 'POSTAGE_URL', 'POSTAGE_DEBUG_MODE', 'POSTAGE_RMQ_USER', 'POSTAGE_RMQ_PASSWORD']) {
    t.true(names.includes(name), name);
  }
});
