/** Broker settings from the config file and the environment, layered as the daemon layers them. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { resolveBroker } from 'postage/internal';
import { envLayer, fileLayer, flagsOverride, mergeLayers } from '../../../cli/broker-settings.js';
import { CliError, ExitCode } from '../../../cli/exit-codes.js';

const dir = mkdtempSync(path.join(tmpdir(), 'postage-cli-settings-'));
function file(name: string, text: string): string {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
}
const nodes = (layers: Parameters<typeof mergeLayers>[0], flags: { host?: string; vhost?: string } = {}): string[] =>
  resolveBroker(mergeLayers(layers), { env: {}, override: flagsOverride(flags) }).targets.map((t) => `${t.user}:${t.password}@${t.hostname}:${t.port}/${t.vhost}`);

test('defaults: guest on 127.0.0.1:5672, vhost /', (t) => {
  t.deepEqual(nodes([]), ['guest:guest@127.0.0.1:5672//']);
});

test('the environment layer holds only the variables that are set', (t) => {
  t.deepEqual(envLayer({}).layer, {});
  t.deepEqual(envLayer({ POSTAGE_HOST: 'a, b:5673', POSTAGE_VHOST: 'v', POSTAGE_PORT: '5000' }).layer, { hosts: ['a', 'b:5673'], vhost: 'v', port: 5000 });
  const old = envLayer({ POSTAGE_RMQ_USER: 'bob' });
  t.is(old.layer.user, 'bob');
  t.true(old.warnings.some((w) => w.includes('POSTAGE_RMQ_USER')));
});

test('fields give one node per host; a URL, from any layer, wins over the fields, as in the daemon', (t) => {
  t.deepEqual(nodes([{ hosts: ['a', 'b:5673'], user: 'u', password: 'p@ss', vhost: 'my/vh' }]), ['u:p@ss@a:5672/my/vh', 'u:p@ss@b:5673/my/vh']);
  t.deepEqual(nodes([{ url: ['amqp://x:y@file-host/fv'] }, { vhost: 'env-vhost' }]), ['x:y@file-host:5672/fv']);
  t.deepEqual(nodes([{ hosts: ['file-host'] }, { url: ['amqp://e@env-host/ev'] }]), ['e:guest@env-host:5672/ev']);
});

test('--host and --vhost replace those parts of every node', (t) => {
  t.deepEqual(nodes([{ url: ['amqp://u:p@h1:5672/v1?heartbeat=5'] }], { vhost: 'other' }), ['u:p@h1:5672/other']);
  t.deepEqual(nodes([{ url: ['amqp://u:p@h1:5672/v1'] }], { host: 'n1, n2:5673' }), ['u:p@n1:5672/v1', 'u:p@n2:5673/v1']);
  t.deepEqual(nodes([{ vhost: 'a' }], { vhost: '/', host: '[::1]:5673' }), ['guest:guest@::1:5673//']);
});

test('a postaged config file (JSON with comments): only its broker section is read', async (t) => {
  const p = file(
    'postaged.json',
    `{
      // the daemon's own keys are ignored here
      "name": "edge", "host": "web-1", "apps": {"x": {"groups": ["g"]}},
      "broker": { "url": ["amqp://u:pw@broker-1/prod"], /* failover */ "hosts": ["b2"], "port": 5673, "vhost": "prod", "user": "u", "password": "pw", "heartbeat": 5, "connectAttempts": 3 }
    }`,
  );
  t.deepEqual(await fileLayer(p), { url: ['amqp://u:pw@broker-1/prod'], hosts: ['b2'], port: 5673, vhost: 'prod', user: 'u', password: 'pw' });
  t.deepEqual(await fileLayer(file('nobroker.json', '{"name": "x"}')), {});
  t.deepEqual(await fileLayer(file('string-url.json', '{"broker": {"url": "amqp://a/b,amqp://c/d"}}')), { url: ['amqp://a/b', 'amqp://c/d'] });
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

test('keys the daemon would refuse are refused here too, by name', async (t) => {
  for (const key of ['host', 'urls', 'pasword']) {
    const err = await t.throwsAsync(fileLayer(file(`${key}.json`, `{"broker": {"${key}": "x"}}`)), { instanceOf: CliError });
    t.is(err?.exitCode, ExitCode.CONFIG);
    t.regex(err?.message ?? '', new RegExp(`broker\\.${key}: unknown key`));
  }
});
