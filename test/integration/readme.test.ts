/**
 * The README's library example must run as written: extract it, run it with tsx inside the
 * project (so `postage` resolves), against a fresh vhost, and check what it prints.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { brokerTest as test, freshVhost } from '../helpers/broker.js';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '../..');

test('the README library example prints what the README says', async (t) => {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const block = readme.match(/```ts\n(\/\/ example\.ts[\s\S]*?)```/)?.[1];
  t.truthy(block, 'README has the example.ts block');
  const dir = mkdtempSync(path.join(root, '.tmp-readme-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'example.ts');
  writeFileSync(file, block ?? '');
  const { url } = await freshVhost(t);
  const { stdout } = await run(process.execPath, ['--import', 'tsx', file], { cwd: root, env: { ...process.env, POSTAGE_URL: url }, timeout: 30_000 });
  t.is(stdout, 'received A test message\ntrue HELLO\n');
});

test('POSTAGE_DEBUG_MODE=true traces messages to stderr', async (t) => {
  const { url } = await freshVhost(t);
  const script = `import { GenericProducer, Connection } from 'postage';
const p = new GenericProducer();
await p.message_echo('traced');
await Connection.closeAll();`;
  const dir = mkdtempSync(path.join(root, '.tmp-debug-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'debug.mjs');
  writeFileSync(file, script);
  const { stderr } = await run(process.execPath, [file], { cwd: root, env: { ...process.env, POSTAGE_URL: url, POSTAGE_DEBUG_MODE: 'true' }, timeout: 30_000 });
  t.regex(stderr, /-->.*traced/);
  const quiet = await run(process.execPath, [file], { cwd: root, env: { ...process.env, POSTAGE_URL: url, POSTAGE_DEBUG_MODE: 'false' }, timeout: 30_000 });
  t.is(quiet.stderr, '');
});

test('deprecated POSTAGE_RMQ_USER / POSTAGE_RMQ_PASSWORD still connect, with a deprecation warning', async (t) => {
  const { vhost } = await freshVhost(t);
  const script = `import { GenericProducer, Connection } from 'postage';
await new GenericProducer().message_echo('old names');
await Connection.closeAll();`;
  const dir = mkdtempSync(path.join(root, '.tmp-dep-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'dep.mjs');
  writeFileSync(file, script);
  const env: NodeJS.ProcessEnv = { ...process.env, POSTAGE_VHOST: vhost, POSTAGE_RMQ_USER: 'guest', POSTAGE_RMQ_PASSWORD: 'guest' };
  delete env['POSTAGE_URL'];
  delete env['POSTAGE_USER'];
  delete env['POSTAGE_PASSWORD'];
  const { stderr } = await run(process.execPath, [file], { cwd: root, env, timeout: 30_000 });
  t.regex(stderr, /DeprecationWarning: POSTAGE_RMQ_USER is deprecated: use POSTAGE_USER/);
  t.regex(stderr, /POSTAGE_RMQ_PASSWORD is deprecated/);
});
