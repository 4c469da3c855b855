/** Broker URLs from the config file, the environment and the flags, layered as the daemon layers them. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { envLayer, fileLayer, resolveBrokerUrls } from '../../../cli/broker-settings.js';
import { CliError, ExitCode } from '../../../cli/exit-codes.js';

const dir = mkdtempSync(path.join(tmpdir(), 'postage-cli-settings-'));
function file(name: string, text: string): string {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
}

test('defaults: guest on 127.0.0.1:5672, vhost /', (t) => {
  t.deepEqual(resolveBrokerUrls([]), ['amqp://guest:guest@127.0.0.1:5672/%2F']);
});

test('the environment layer holds only the variables that are set', (t) => {
  t.deepEqual(envLayer({}).layer, {});
  t.deepEqual(envLayer({ POSTAGE_HOST: 'a, b:5673', POSTAGE_VHOST: 'v', POSTAGE_PORT: '5000' }).layer, { hosts: ['a', 'b:5673'], vhost: 'v', port: 5000 });
  const old = envLayer({ POSTAGE_RMQ_USER: 'bob' });
  t.is(old.layer.user, 'bob');
  t.true(old.warnings.some((w) => w.includes('POSTAGE_RMQ_USER')));
});

test('fields build one URL per host; a URL wins over the fields, as in the daemon', (t) => {
  t.deepEqual(resolveBrokerUrls([{ hosts: ['a', 'b:5673'], user: 'u', password: 'p@ss', vhost: 'my/vh' }]), ['amqp://u:p%40ss@a:5672/my%2Fvh', 'amqp://u:p%40ss@b:5673/my%2Fvh']);
  t.deepEqual(resolveBrokerUrls([{ urls: ['amqp://x:y@file-host/fv'] }, { vhost: 'env-vhost' }]), ['amqp://x:y@file-host/fv']);
  t.deepEqual(resolveBrokerUrls([{ hosts: ['file-host'] }, { urls: ['amqp://e@env-host/ev'] }]), ['amqp://e@env-host/ev']);
});

test('--host and --vhost replace those parts of every URL', (t) => {
  t.deepEqual(resolveBrokerUrls([{ urls: ['amqp://u:p@h1:5672/v1?heartbeat=5'] }], { vhost: 'other' }), ['amqp://u:p@h1:5672/other?heartbeat=5']);
  t.deepEqual(resolveBrokerUrls([{ urls: ['amqp://u:p@h1:5672/v1'] }], { hosts: ['n1', 'n2:5673'] }), ['amqp://u:p@n1:5672/v1', 'amqp://u:p@n2:5673/v1']);
  t.deepEqual(resolveBrokerUrls([{ vhost: 'a' }], { vhost: '/' }), ['amqp://guest:guest@127.0.0.1:5672/%2F']);
});

test("a postaged config file (JSON with comments): only its broker section is read", async (t) => {
  const p = file(
    'postaged.json',
    `{
      // the daemon's own keys are ignored here
      "name": "edge", "host": "web-1", "apps": {"x": {"groups": ["g"]}},
      "broker": { "url": ["amqp://u:pw@broker-1/prod"], /* failover */ "hosts": ["b2"], "port": 5673, "vhost": "prod", "user": "u", "password": "pw" }
    }`,
  );
  t.deepEqual(await fileLayer(p), { urls: ['amqp://u:pw@broker-1/prod'], hosts: ['b2'], port: 5673, vhost: 'prod', user: 'u', password: 'pw' });
  t.deepEqual(await fileLayer(file('nobroker.json', '{"name": "x"}')), {});
  t.deepEqual(await fileLayer(file('string-url.json', '{"broker": {"url": "amqp://a/b,amqp://c/d"}}')), { urls: ['amqp://a/b', 'amqp://c/d'] });
});

test('a missing or invalid config file is exit 78, and a bad password is never echoed', async (t) => {
  const missing = await t.throwsAsync(fileLayer(path.join(dir, 'nope.json')), { instanceOf: CliError });
  t.is(missing?.exitCode, ExitCode.CONFIG);
  t.regex(missing?.message ?? '', /nope\.json: ENOENT/);
  const bad = await t.throwsAsync(fileLayer(file('bad.json', '{"broker": {')), { instanceOf: CliError });
  t.is(bad?.exitCode, ExitCode.CONFIG);
  const port = await t.throwsAsync(fileLayer(file('port.json', '{"broker": {"port": "x"}}')), { instanceOf: CliError });
  t.regex(port?.message ?? '', /broker\.port must be a port number/);
  const secret = await t.throwsAsync(fileLayer(file('pw.json', '{"broker": {"password": 12345678}}')), { instanceOf: CliError });
  t.false(secret?.message.includes('12345678'));
});
