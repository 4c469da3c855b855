import { readFileSync, readdirSync } from 'node:fs';
import test from 'ava';
import {
  Fingerprint,
  JsonEncoder,
  Message,
  MessageCommand,
  MessageResult,
  MessageResultError,
  MessageResultException,
  MessageStatus,
  RpcCommand,
  messageFromBody,
} from 'postage';

const dir = new URL('../../fixtures/wire/', import.meta.url);
const read = (file: string): Record<string, unknown> => JSON.parse(readFileSync(new URL(file, dir), 'utf8')) as Record<string, unknown>;
const fingerprint = read('fingerprint.json');

/** The TypeScript call matching each Python call of fixtures/wire/README.md. */
const cases: Record<string, { build: () => Message; cls: Function; ok: boolean }> = {
  'message_command.json': { build: () => new MessageCommand('sum', { a: 5, b: 6 }), cls: MessageCommand, ok: true },
  'message_command_string_parameters.json': { build: () => new MessageCommand('echo', 'A test message'), cls: MessageCommand, ok: true },
  'message_command_no_parameters.json': { build: () => new MessageCommand('quit'), cls: MessageCommand, ok: true },
  'rpc_command.json': { build: () => new RpcCommand('echo', { text: 'RPC test message' }), cls: RpcCommand, ok: true },
  'join_group.json': { build: () => new MessageCommand('join_group', { group_name: 'g1' }), cls: MessageCommand, ok: true },
  'message_status.json': { build: () => new MessageStatus('online'), cls: MessageStatus, ok: true },
  'message_result.json': { build: () => new MessageResult('RPC message received'), cls: MessageResult, ok: true },
  'message_result_with_message.json': { build: () => new MessageResult(42, 'the answer'), cls: MessageResult, ok: true },
  'message_result_error.json': { build: () => new MessageResultError('division by zero is not allowed'), cls: MessageResultError, ok: false },
  'message_result_exception.json': {
    build: () => new MessageResultException('ZeroDivisionError', 'integer division or modulo by zero'),
    cls: MessageResultException,
    ok: false,
  },
  'message_result_timeout.json': { build: () => new MessageResultException('TimeoutError', ''), cls: MessageResultException, ok: false },
  'message_generic_args_kwds.json': { build: () => new Message([1, 'str'], { values: [1, 2, 3, 'numbers'] }), cls: Message, ok: true },
  'message_generic_empty.json': { build: () => new Message(), cls: Message, ok: true },
};

test('every golden fixture has a TypeScript case', (t) => {
  const files = readdirSync(dir).filter((f) => f.endsWith('.json') && f !== 'fingerprint.json').sort();
  t.deepEqual(files, Object.keys(cases).sort());
});

for (const [file, c] of Object.entries(cases)) {
  test(`encodes ${file} exactly as Python`, (t) => {
    const message = c.build().setFingerprint(new Fingerprint(fingerprint as ConstructorParameters<typeof Fingerprint>[0]).asDict());
    const encoder = new JsonEncoder();
    t.deepEqual(encoder.decode(encoder.encode(message.body)), read(file));
  });

  test(`decodes ${file} to the right class`, (t) => {
    const decoded = messageFromBody(read(file));
    t.is(decoded.constructor, c.cls);
    t.true(decoded instanceof c.cls);
    t.is(decoded.ok, c.ok);
    t.deepEqual(decoded.body, read(file));
  });
}

test('fingerprint as dict and tuple', (t) => {
  const fp = new Fingerprint({ name: 'echo_send', type: 'application', pid: 4242, host: 'hostA', user: 'alice', vhost: '/' });
  t.deepEqual(fp.asDict(), fingerprint);
  t.deepEqual(fp.asTuple(), ['echo_send', 'application', '4242', 'hostA', 'alice', '/']);
  const auto = new Fingerprint({ name: 'x' });
  t.is(auto.pid, String(process.pid));
  t.is(typeof auto.host, 'string');
});
