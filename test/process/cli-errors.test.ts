/**
 * `postage` as a child process, where no daemon is needed: exit codes for usage errors,
 * invalid JSON parameters, an unreachable broker, a bad config file, a key nobody listens
 * to, and `--help` on every command.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { brokerTest, freshVhost } from '../helpers/broker.js';

const BIN = new URL('../../bin/postage', import.meta.url).pathname;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs `./bin/postage` with `env` added to a clean POSTAGE_* environment. */
function postage(args: readonly string[], env: Record<string, string> = {}, input?: string): Promise<Run> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('POSTAGE_')));
  const started = Date.now();
  return new Promise((resolve) => {
    const child = execFile(BIN, [...args], { env: { ...clean, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
    if (input !== undefined) child.stdin?.end(input);
    else child.stdin?.end();
  });
}

const UNREACHABLE = 'amqp://guest:s3cret@127.0.0.1:1/';

test('broker unreachable: exit 69, the URL without its password, no stack trace, promptly', async (t) => {
  const r = await postage(['ping', 'anything'], { POSTAGE_URL: UNREACHABLE });
  t.is(r.code, 69, r.stderr);
  t.regex(r.stderr, /broker unreachable at amqp:\/\/guest@127\.0\.0\.1:1\//);
  t.false(r.stderr.includes('s3cret'));
  t.false(r.stdout.includes('s3cret'));
  t.notRegex(r.stderr, /\n\s+at /, 'no stack trace');
  t.is(r.stderr.trim().split('\n').length, 1, 'one line');
});

test('broker unreachable: the CLI tries once, no retry loop', async (t) => {
  // A listener that drops every connection counts the attempts; counted, not timed (a clock bound
  // failed at 16.7 s against 15 s on a machine loaded twice over, while a loop of retries would
  // be told apart from one try only by ~30 s of back-off).
  let attempts = 0;
  const server = createServer((socket) => {
    attempts += 1;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const { port } = server.address() as AddressInfo;
  const r = await postage(['ping', 'anything'], { POSTAGE_URL: `amqp://guest:s3cret@127.0.0.1:${port}/` });
  t.is(r.code, 69, r.stderr);
  t.regex(r.stderr, new RegExp(`broker unreachable at amqp://guest@127\\.0\\.0\\.1:${port}/`));
  t.false(r.stderr.includes('s3cret'));
  t.is(attempts, 1, 'one connection attempt');
});

test('broker unreachable for every command that talks to it (from env fields and --host)', async (t) => {
  for (const args of [['ps'], ['status'], ['send', 'x', 'y'], ['rpc', 'x/rr', 'y'], ['restart', 'x'], ['quit', 'x'], ['join', 'x', 'g'], ['leave', 'x', 'g']]) {
    const r = await postage(args, { POSTAGE_HOST: '127.0.0.1', POSTAGE_PORT: '1', POSTAGE_PASSWORD: 'hunter22' });
    t.is(r.code, 69, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, /127\.0\.0\.1:1/);
    t.false(r.stderr.includes('hunter22'));
  }
  const flag = await postage(['ping', '--host', '127.0.0.1:1'], { POSTAGE_URL: 'amqp://guest:s3cret@127.0.0.1:5672/' });
  t.is(flag.code, 69, '--host overrides the host of POSTAGE_URL');
  t.false(flag.stderr.includes('s3cret'));
});

test('invalid JSON parameters: exit 2 naming line, column and position, before any connection', async (t) => {
  const r = await postage(['rpc', 'echo/rr', 'echo', '{"text": "hi",}'], { POSTAGE_URL: UNREACHABLE });
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /invalid JSON parameters \(command line\) at line 1, column 15 \(position 14\): trailing comma before "\}"/);
  t.regex(r.stderr, /\{"text": "hi",\}\n\s{16}\^/);
  t.notRegex(r.stderr, /\n\s+at /);
  const send = await postage(['send', 'echo', 'echo', 'hello'], { POSTAGE_URL: UNREACHABLE });
  t.is(send.code, 2);
  t.regex(send.stderr, /position 0\): unexpected character "h"/);
  t.regex(send.stderr, /needs JSON quotes/);
});

test('invalid JSON from stdin and from a file names its source and line', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'postage-cli-'));
  const file = path.join(dir, 'params.json');
  writeFileSync(file, '{\n  "a": 1\n  "b": 2\n}\n');
  const fromFile = await postage(['send', 'echo', 'echo', `@${file}`], { POSTAGE_URL: UNREACHABLE });
  t.is(fromFile.code, 2);
  t.regex(fromFile.stderr, new RegExp(`\\(file ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\) at line 3, column 3 \\(position 13\\): expected "," or "\\}"`));
  const fromStdin = await postage(['rpc', 'echo/rr', 'echo', '-'], { POSTAGE_URL: UNREACHABLE }, '[1, 2');
  t.is(fromStdin.code, 2);
  t.regex(fromStdin.stderr, /\(stdin\) at line 1, column 6 \(position 5\)/);
  const missing = await postage(['send', 'echo', 'echo', `@${path.join(dir, 'nope.json')}`], { POSTAGE_URL: UNREACHABLE });
  t.is(missing.code, 2);
  t.regex(missing.stderr, /cannot read the parameters file .*nope\.json: ENOENT/);
});

test('usage errors exit 2: unknown command, missing argument, bad option value, bad key, bad group', async (t) => {
  const cases: string[][] = [['frobnicate'], ['send', 'echo'], ['ping', '--timeout', 'soon'], ['ping', 'echo', '--expect', '0'], ['ping', 'echo/r'], ['join', 'echo', 'a@b'], ['ps', '--bogus'], []];
  for (const args of cases) {
    const r = await postage(args, { POSTAGE_URL: UNREACHABLE });
    t.is(r.code, 2, `postage ${args.join(' ')}: ${r.stderr}`);
    t.notRegex(r.stderr, /\n\s+at /);
  }
});

test('a missing or invalid --config file exits 78 and names the file', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'postage-cli-'));
  const missing = await postage(['ps', '--config', path.join(dir, 'none.json')]);
  t.is(missing.code, 78);
  t.regex(missing.stderr, /none\.json: ENOENT/);
  const bad = path.join(dir, 'bad.json');
  writeFileSync(bad, '{"broker": {"port": 0}}');
  const invalid = await postage(['ps', '--config', bad]);
  t.is(invalid.code, 78);
  t.regex(invalid.stderr, /broker\.port/);
});

test('a --config file is read with the environment above it, as postaged reads it', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'postage-cli-'));
  const file = path.join(dir, 'postaged.json');
  writeFileSync(file, '{\n  // comments are allowed, as in postaged\n  "broker": {"hosts": ["127.0.0.1"], "port": 1, "password": "fromfile"}\n}\n');
  const r = await postage(['ping', '--config', file]);
  t.is(r.code, 69);
  t.regex(r.stderr, /broker unreachable at amqp:\/\/guest@127\.0\.0\.1:1\//, 'the node, without any password');
  t.false(r.stderr.includes('fromfile'));
  const env = await postage(['ping', '--config', file], { POSTAGE_PORT: '2' });
  t.regex(env.stderr, /127\.0\.0\.1:2\//, 'the environment wins over the file');
});

test('--help on every command exits 0 with examples and the exit codes', async (t) => {
  for (const cmd of ['ping', 'status', 'send', 'rpc', 'restart', 'quit', 'join', 'leave', 'ps']) {
    const r = await postage([cmd, '--help']);
    t.is(r.code, 0, cmd);
    t.regex(r.stdout, new RegExp(`^Usage: postage ${cmd} `), cmd);
    t.regex(r.stdout, /Examples:\n  \$ postage /, cmd);
    t.regex(r.stdout, /Exit codes:[\s\S]*69 {2}broker unreachable/, cmd);
  }
  const top = await postage(['--help']);
  t.is(top.code, 0);
  for (const cmd of ['ping', 'status', 'send', 'rpc', 'restart', 'quit', 'join', 'leave', 'ps']) t.regex(top.stdout, new RegExp(`\\n  ${cmd} `));
});

brokerTest('ping on a key nobody listens to exits 3 within the timeout', async (t) => {
  const { url } = await freshVhost(t, 'cli-errors');
  const r = await postage(['ping', 'nobody-here', '--timeout', '1'], { POSTAGE_URL: url });
  t.is(r.code, 3, r.stderr);
  t.is(r.stdout, '');
  t.regex(r.stderr, /no reply to ping on key 'nobody-here' within 1 s/);
  t.true(r.ms >= 1000, `waited the timeout (${r.ms} ms)`);
  const json = await postage(['ping', 'nobody-here', '--timeout', '0.5', '--json'], { POSTAGE_URL: url });
  t.is(json.code, 3);
  t.deepEqual(JSON.parse(json.stdout), []);
});

brokerTest('a command to a key no queue is bound to exits 3 and says nobody received it', async (t) => {
  const { url } = await freshVhost(t, 'cli-errors');
  const r = await postage(['send', 'nobody-here', 'hello', '"hi"'], { POSTAGE_URL: url });
  t.is(r.code, 3, r.stderr);
  t.regex(r.stderr, /no queue is bound to key 'nobody-here'/);
});
