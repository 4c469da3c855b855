import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { ConfigError, loadConfig, redactConfig, schemaEntries, secretsOf } from '../../../daemon/config.js';
import { scrubber } from '../../../daemon/secrets.js';

function file(content: unknown): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postaged-config-'));
  const f = path.join(dir, 'c.json');
  fs.writeFileSync(f, typeof content === 'string' ? content : JSON.stringify(content));
  return f;
}

test('every key has doc, default and format; env names are unique', (t) => {
  const envs = new Set<string>();
  for (const { key, item } of schemaEntries()) {
    t.true(typeof item.doc === 'string' && item.doc.length > 10, `${key}: doc`);
    t.true('default' in item, `${key}: default`);
    t.truthy(item.format, `${key}: format`);
    if (item.env) {
      t.false(envs.has(item.env), `${key}: ${item.env} used once`);
      envs.add(item.env);
    }
  }
});

test('defaults load, validate and are frozen', (t) => {
  const { config, sources, configFile } = loadConfig({ env: {} });
  t.is(config.name, 'postaged');
  t.is(config.pluginDir, 'plugins');
  t.deepEqual(config.broker.hosts, ['127.0.0.1']);
  t.is(config.broker.port, 5672);
  t.is(configFile, null);
  t.is(sources['name'], 'default');
  t.is(config.defaults.maxDeliveries, 20);
  t.true(Object.isFrozen(config) && Object.isFrozen(config.broker) && Object.isFrozen(config.broker.hosts));
  t.throws(() => {
    (config as { name: string }).name = 'x';
  });
});

test('layers: file < env < argv, with the source of each key', (t) => {
  const f = file({ name: 'from-file', drainTimeout: 1000, shutdownTimeout: 5000, log: { level: 'warn' }, broker: { port: 5673 } });
  const { config, sources } = loadConfig({ configFile: f, env: { POSTAGED_DRAIN_TIMEOUT: '2000', POSTAGE_PORT: '5674' }, argv: { 'drainTimeout': '3000', watch: false } });
  t.is(config.name, 'from-file');
  t.is(config.log.level, 'warn');
  t.is(config.broker.port, 5674, 'env over file');
  t.is(config.drainTimeout, 3000, 'argv over env');
  t.is(config.watch, false);
  t.deepEqual([sources['name'], sources['broker.port'], sources['drainTimeout'], sources['watch'], sources['log.format']], ['file', 'env', 'argv', 'argv', 'default']);
});

test('strings from env and argv keep their meaning (no number guessing)', (t) => {
  const { config } = loadConfig({ env: {}, argv: { name: '007' } });
  t.is(config.name, '007');
});

test('lists from the environment: hosts and URLs, comma-separated', (t) => {
  const { config } = loadConfig({ env: { POSTAGE_HOST: 'a, b:5673', POSTAGE_URL: 'amqp://u:p@x/v,amqps://y' } });
  t.deepEqual(config.broker.hosts, ['a', 'b:5673']);
  t.deepEqual(config.broker.url, ['amqp://u:p@x/v', 'amqps://y']);
});

const bad: Array<[string, Parameters<typeof loadConfig>[0], string, RegExp]> = [
  ['unknown top key', { configFile: file({ plugins: 'x' }) }, 'plugins', /plugins: unknown key \(value "x"\)/],
  ['unknown key, suggestion', { configFile: file({ level: 'x' }) }, 'level', /did you mean log\.level\?/],
  ['unknown key holding a URL: its password hidden', { configFile: file({ broker: { urls: 'amqp://u:s3cr3t@h/v' } }) }, 'broker.urls', /broker\.urls: unknown key \(value "amqp:\/\/u:\*\*\*@h\/v"\)/],
  ['bad enum', { env: { POSTAGED_LOG_LEVEL: 'loud' } }, 'log.level', /\(value "loud"\) \[from env POSTAGED_LOG_LEVEL\]/],
  ['bad number', { argv: { drainTimeout: '1.5' } }, 'drainTimeout', /\(value "1\.5"\) \[from --drain-timeout\]/],
  ['bad port', { configFile: file({ broker: { port: 70000 } }) }, 'broker.port', /\(value 70000\) \[from file\]/],
  ['bad url', { env: { POSTAGE_URL: 'http://u:hunter22@x' } }, 'broker.url', /bad entry: http:\/\/u:\*\*\*@x/],
  ['bad group', { configFile: file({ apps: { a: { groups: ['x y'] } } }) }, 'apps.a.groups', /apps\.a\.groups: must be a list of group names/],
  ['bad app name', { configFile: file({ apps: { 'a@b': {} } }) }, 'apps.a@b', /application names may not/],
  ['bad settings', { configFile: file({ apps: { a: { settings: [] } } }) }, 'apps.a.settings', /must be an object/],
  ['bad maxDeliveries', { env: { POSTAGED_MAX_DELIVERIES: '-1' } }, 'defaults.maxDeliveries', /must be a whole number from 0 \(off\)/],
  ['bad per-application maxDeliveries', { configFile: file({ apps: { a: { maxDeliveries: 2.5 } } }) }, 'apps.a.maxDeliveries', /apps\.a\.maxDeliveries: must be a whole number from 0 \(off\)/],
  ['unknown POSTAGED_ variable, suggestion', { env: { POSTAGED_PREFECTH: '10' } }, 'POSTAGED_PREFECTH', /POSTAGED_PREFECTH: unknown environment variable; did you mean POSTAGED_PREFETCH\?/],
  ['unknown POSTAGED_ variable, no look-alike', { env: { POSTAGED_COLOUR: 'blue' } }, 'POSTAGED_COLOUR', /^POSTAGED_COLOUR: unknown environment variable \(docs/],
  ['missing file', { configFile: '/nope/c.json' }, '--config', /config file not found: \/nope\/c\.json/],
  ['not JSON', { configFile: file('{"a":') }, '--config', /is not valid JSON/],
  ['not an object', { configFile: file('[1]') }, '--config', /must hold a JSON object/],
];
for (const [title, options, key, message] of bad) {
  test(`refused: ${title}, naming the key`, (t) => {
    const err = t.throws(() => loadConfig({ env: {}, ...options }), { instanceOf: ConfigError });
    t.is(err?.key, key);
    t.regex(err?.message ?? '', message);
  });
}

test('POSTAGED_CONFIG and POSTAGED_STATE are not settings but are known; an unset variable is ignored; the value of an unknown one is not echoed', (t) => {
  t.notThrows(() => loadConfig({ env: { POSTAGED_CONFIG: '/x.json', POSTAGED_STATE: '{}', POSTAGED_APPS: undefined } }));
  const err = t.throws(() => loadConfig({ env: { POSTAGED_URL: 'amqp://u:s3cr3t@h/v' } }), { instanceOf: ConfigError });
  t.is(err?.key, 'POSTAGED_URL');
  t.false(err?.message.includes('s3cr3t'));
});

test('a bad password is refused without echoing it', (t) => {
  const err = t.throws(() => loadConfig({ env: {}, configFile: file({ broker: { password: 12345678 } }) }), { instanceOf: ConfigError });
  t.is(err?.key, 'broker.password');
  t.false(err?.message.includes('12345678'));
});

test('JSON with comments is accepted in config files', (t) => {
  const { config } = loadConfig({ env: {}, configFile: file('{\n  // the name\n  "name": "x", /* inline */ "log": { "level": "debug" }\n}') });
  t.is(config.name, 'x');
  t.is(config.log.level, 'debug');
});

test('deprecated POSTAGE_RMQ_* variables are read, with a warning', (t) => {
  const { config, warnings } = loadConfig({ env: { POSTAGE_RMQ_USER: 'old', POSTAGE_RMQ_PASSWORD: 'oldpw' } });
  t.is(config.broker.user, 'old');
  t.is(config.broker.password, 'oldpw');
  t.is(warnings.length, 2);
  const current = loadConfig({ env: { POSTAGE_RMQ_USER: 'old', POSTAGE_USER: 'new' } });
  t.is(current.config.broker.user, 'new');
});

test('redactConfig hides the password, URL passwords and secret-looking settings, and says which; secretsOf lists them', (t) => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'postaged-secrets-')), 'c.json');
  fs.writeFileSync(file, JSON.stringify({ apps: { billing: { settings: { apiKey: 'k-123456', db: { password: 'db-pw', host: 'db1' }, region: 'eu' } } } }));
  const { config } = loadConfig({ configFile: file, env: { POSTAGE_PASSWORD: 'pa:ss@w', POSTAGE_URL: 'amqp://u:s%40cret@h/v' } });
  const { config: shown, redacted } = redactConfig(config);
  const text = JSON.stringify(shown);
  for (const leak of ['pa:ss@w', 's%40cret', 'k-123456', 'db-pw']) t.false(text.includes(leak), leak);
  t.regex(text, /amqp:\/\/u:\*\*\*@h\/v/);
  t.like(shown.apps['billing']?.settings, { region: 'eu', apiKey: '***', db: { host: 'db1', password: '***' } });
  t.deepEqual(redacted, ['broker.password', 'broker.url (passwords)', 'apps.billing.settings.apiKey', 'apps.billing.settings.db.password']);
  const secrets = secretsOf(config, {});
  for (const s of ['pa:ss@w', 's@cret', 'k-123456', 'db-pw']) t.true(secrets.includes(s), s);
  t.false(secretsOf(loadConfig({ env: {} }).config, {}).includes('guest'), 'the default guest password is not scrubbed from every line');
});

test('the scrubber removes each secret as written, URL-encoded and JSON-escaped; a short one only where it stands alone', (t) => {
  const clean = scrubber(['p:@%/#"\\w', 'ab']);
  const pw = 'p:@%/#"\\w';
  for (const form of [pw, encodeURIComponent(pw), JSON.stringify(pw).slice(1, -1), JSON.stringify(JSON.stringify(pw))]) {
    t.false(clean(`x ${form} y`).includes(pw), form);
    t.false(clean(`x ${form} y`).includes(encodeURIComponent(pw)), form);
    t.false(clean(`x ${form} y`).includes(JSON.stringify(pw).slice(1, -1)), form);
  }
  t.is(clean('{"password":"ab","about":"tab"}'), '{"password":"***","about":"tab"}');
  t.is(clean('amqp://u:ab@host'), 'amqp://u:***@host');
});

test('the example configs in config/ load and validate', (t) => {
  const dir = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../config');
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.jsonc'));
  t.deepEqual(files.sort(), ['container.jsonc', 'local.jsonc', 'systemd.jsonc']);
  for (const f of files) t.notThrows(() => loadConfig({ env: {}, configFile: path.join(dir, f) }), f);
});
