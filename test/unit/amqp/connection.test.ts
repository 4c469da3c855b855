import test from 'ava';
import { Connection, GenericProducer, PostageError } from 'postage';
import { displayTarget, redactUrl, resolveBroker } from 'postage/internal';

test('redactUrl hides the password, keeps the rest', (t) => {
  t.is(redactUrl('amqp://bob:s3cr%40t@host:5672/v'), 'amqp://bob:***@host:5672/v');
  t.is(redactUrl('amqp://host/v'), 'amqp://host/v');
});

test('one node per host, credentials kept as they are (never through a URL)', (t) => {
  const c = new Connection({ hosts: ['a', 'b:5673'], port: 5672, vhost: '/', user: 'u', password: 'p:@%/#é', env: {} });
  t.deepEqual(
    c.targets.map((x) => [x.hostname, x.port, x.vhost, x.user, x.password]),
    [
      ['a', 5672, '/', 'u', 'p:@%/#é'],
      ['b', 5673, '/', 'u', 'p:@%/#é'],
    ],
  );
  t.deepEqual(c.targets.map(displayTarget), ['amqp://u@a:5672/%2F', 'amqp://u@b:5673/%2F']);
});

test('IPv6 hosts, with and without a port, as a host entry or in a URL', (t) => {
  const hosts = resolveBroker({ hosts: ['[::1]:5673', '[fe80::1]', '::1'] }, { env: {} }).targets;
  t.deepEqual(hosts.map((x) => [x.hostname, x.port]), [['::1', 5673], ['fe80::1', 5672], ['::1', 5672]]);
  t.is(displayTarget(hosts[0]!), 'amqp://guest@[::1]:5673/%2F');
  const url = resolveBroker({ url: 'amqp://u:p@[::1]:5673/v' }, { env: {} }).targets[0]!;
  t.like(url, { hostname: '::1', port: 5673, vhost: 'v', user: 'u', password: 'p' });
});

test('a URL wins over hosts/port/vhost; its credentials win, the settings fill in what it lacks', (t) => {
  const [a] = resolveBroker({ url: 'amqp://host-a/vh', hosts: ['ignored'], vhost: 'ignored', user: 'bob', password: 's3cr%t' }, { env: {} }).targets;
  t.like(a, { hostname: 'host-a', port: 5672, vhost: 'vh', user: 'bob', password: 's3cr%t' });
  const [b] = resolveBroker({ url: 'amqps://x:y%40z@h?heartbeat=7' }, { env: {} }).targets;
  t.like(b, { protocol: 'amqps', port: 5671, user: 'x', password: 'y@z', vhost: '/', heartbeat: 7 });
  t.deepEqual(b?.tls, {});
});

test('the environment is read only for the fields not given, and warns only for what it gave', (t) => {
  const env = { POSTAGE_HOST: 'env-host', POSTAGE_RMQ_USER: 'old', POSTAGE_PASSWORD: 'env-pw' };
  const given = resolveBroker({ user: 'explicit' }, { env });
  t.like(given.targets[0], { hostname: 'env-host', user: 'explicit', password: 'env-pw' });
  t.deepEqual(given.warnings, [], 'an explicit user: no POSTAGE_RMQ_USER warning');
  const fromEnv = resolveBroker({}, { env });
  t.like(fromEnv.targets[0], { user: 'old' });
  t.deepEqual(fromEnv.warnings, ['POSTAGE_RMQ_USER is deprecated: use POSTAGE_USER']);
});

test('the override replaces the host(s) and the vhost of every node', (t) => {
  const { targets } = resolveBroker({ url: ['amqp://u:p@h1:5674/v1?heartbeat=5'] }, { env: {}, override: { hosts: ['n1', 'n2:5673'], vhost: 'other' } });
  t.deepEqual(targets.map((x) => [x.hostname, x.port, x.vhost, x.user, x.heartbeat]), [
    ['n1', 5674, 'other', 'u', 5],
    ['n2', 5673, 'other', 'u', 5],
  ]);
});

test('bad settings are refused naming the field, never echoing a password', (t) => {
  for (const [settings, key] of [
    [{ hosts: ['a b'] }, 'hosts'],
    [{ hosts: ['h:99999'] }, 'hosts'],
    [{ port: 0 }, 'port'],
    [{ url: 'http://u:secret@h/' }, 'url'],
    [{ url: 'not a url secret' }, 'url'],
  ] as const) {
    const err = t.throws(() => resolveBroker(settings, { env: {} }));
    t.is((err as PostageError).code, 'POSTAGE_ERR_INVALID_ARGUMENT');
    t.is((err as PostageError).details['key'], key);
    t.notRegex(err?.message ?? '', /secret/);
  }
});

test('an unreachable broker is a coded error that names every URL tried, without the password', async (t) => {
  const c = new Connection({ url: ['amqp://guest:s3cret@127.0.0.1:1/', 'amqp://guest:s3cret@127.0.0.1:2/'], connectTimeout: 2000 });
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
