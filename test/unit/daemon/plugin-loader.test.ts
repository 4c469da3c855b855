import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { GenericApplication } from 'postage';
import { baseName, isPluginFile, loadPlugin } from '../../../daemon/plugin-loader.js';

const fixtures = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../fixtures/plugins');

test('which files are plugins', (t) => {
  for (const f of ['a.js', 'a.mjs', 'a.cjs', 'a.ts', 'a.mts']) t.true(isPluginFile(f), f);
  for (const f of ['a.d.ts', '_helper.ts', '.hidden.js', 'README.md', 'a.json', 'a.js.map']) t.false(isPluginFile(f), f);
  t.is(baseName('/x/rpc-echo.ts'), 'rpc-echo');
});

test('an ES module plugin: its class (the very GenericApplication of this process) and its name', async (t) => {
  const loaded = await loadPlugin(path.join(fixtures, 'echo-mjs.mjs'));
  t.true(loaded.ok);
  if (!loaded.ok) return;
  t.is(loaded.name, 'echo-mjs', 'the file name when there is no static appName');
  t.true(GenericApplication.prototype.isPrototypeOf(loaded.appClass.prototype));
  t.is(loaded.warning, undefined);
  const named = await loadPlugin(path.join(fixtures, 'dup-a.mjs'));
  t.is(named.ok && named.name, 'dup', 'static appName wins');
});

const failures: Array<[string, RegExp]> = [
  ['bad-export.mjs', /does not extend GenericApplication/],
  ['throws-on-import.mjs', /Error while importing: boom at import time/],
  ['syntax-error.js', /SyntaxError while importing/],
];
for (const [file, reason] of failures) {
  test(`${file}: refused with the file and the reason, never thrown`, async (t) => {
    const loaded = await loadPlugin(path.join(fixtures, file));
    t.false(loaded.ok);
    t.is(loaded.file, path.join(fixtures, file));
    if (!loaded.ok) t.regex(loaded.reason, reason);
  });
}

test('module shapes: no default export, a non-class default, a name unusable in addresses', async (t) => {
  const dir = fs.mkdtempSync(path.join(fixtures, '.tmp-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string): string => {
    fs.writeFileSync(path.join(dir, name), text);
    return path.join(dir, name);
  };
  const none = await loadPlugin(write('none.mjs', 'export const a = 1;'));
  t.regex(!none.ok ? none.reason : '', /no default export \(exports: a\)/);
  const value = await loadPlugin(write('value.mjs', 'export default 42;'));
  t.regex(!value.ok ? value.reason : '', /default export is a number/);
  const badName = await loadPlugin(write('badname.mjs', "import { GenericApplication } from 'postage';\nexport default class X extends GenericApplication { static appName = 'a b'; }"));
  t.regex(!badName.ok ? badName.reason : '', /not usable in addresses/);
  const nested = await loadPlugin(write('nested.mjs', "import { GenericApplication } from 'postage';\nclass X extends GenericApplication {}\nexport default { default: X };"));
  t.true(nested.ok, 'default.default (transpiled CommonJS) is unwrapped');
});

test('a missing file is a failure, not a throw', async (t) => {
  // In a folder of our own: os.tmpdir() itself is writable by everyone, which strictModes refuses first.
  const loaded = await loadPlugin(path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'postage-loader-')), 'no-such-plugin.mjs'));
  t.false(loaded.ok);
  if (!loaded.ok) t.regex(loaded.reason, /ENOENT/);
});
