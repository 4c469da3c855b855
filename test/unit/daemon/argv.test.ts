import test from 'ava';
import { helpText, parseCommandLine } from '../../../daemon/argv.js';
import { ConfigError, schemaEntries } from '../../../daemon/config.js';

test('flags map to schema keys; meta flags are read apart', (t) => {
  const line = parseCommandLine(['--plugins', 'p', '--name', 'n', '--log-level', 'debug', '--no-watch', '-c', 'f.json', '--print-config']);
  t.deepEqual(line.overrides, { pluginDir: 'p', name: 'n', 'log.level': 'debug', watch: false });
  t.is(line.configFile, 'f.json');
  t.true(line.printConfig);
  t.false(line.help);
  t.true(parseCommandLine(['-h']).help);
  t.true(parseCommandLine(['--version']).version);
  t.deepEqual(parseCommandLine(['--watch']).overrides, { watch: true });
  t.deepEqual(parseCommandLine(['--plugins=x y']).overrides, { pluginDir: 'x y' });
});

test('unknown flags, stray arguments and missing values are configuration errors', (t) => {
  for (const argv of [['--nope'], ['plugins'], ['--plugins']]) {
    const err = t.throws(() => parseCommandLine(argv), { instanceOf: ConfigError });
    t.regex(err?.message ?? '', /command line: .*\(see --help\)/);
  }
});

test('--help shows every flag and every environment variable of the schema', (t) => {
  const help = helpText('9.9.9');
  t.regex(help, /^postaged 9\.9\.9/);
  for (const { item } of schemaEntries()) {
    if (item.arg) t.true(help.includes(`--${item.arg}`) || help.includes(`--[no-]${item.arg}`), item.arg);
    if (item.env) t.true(help.includes(item.env), item.env);
  }
  t.false(/guest/.test(help.split('\n').find((l) => l.includes('POSTAGE_PASSWORD')) ?? ''), 'secret defaults are not shown');
});
