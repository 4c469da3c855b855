import test from 'ava';
import type { ConsumeMessage } from 'amqplib';
import { rpcCall, isCallTimeout } from '../../../dist/lib/messaging/rpc-client.js';
import type { Connection } from '../../../dist/lib/amqp/connection.js';
import type { LaneListener } from '../../../dist/lib/amqp/reply-lanes.js';

/**
 * A connection whose exchange declaration and channel are under the test's control: what
 * the call publishes is recorded, and nothing goes out until the test lets it.
 */
function fakeConnection() {
  const published: Array<{ correlationId: string; at: number }> = [];
  const asked = { declarations: 0, publishes: 0 };
  let declared = false;
  let releaseDeclaration!: () => void;
  const declaration = new Promise<void>((resolve) => (releaseDeclaration = () => ((declared = true), resolve())));
  let openChannel!: () => void;
  const channelOpen = new Promise<void>((resolve) => (openChannel = resolve));
  let listener: LaneListener | undefined;
  const lane = {
    listen: (l: LaneListener | undefined) => void (listener = l),
    async publish(_exchange: string, _key: string, _content: Buffer, options: { correlationId: string }, stillWanted: () => boolean = () => true) {
      asked.publishes++;
      await channelOpen;
      if (!stillWanted()) return false;
      published.push({ correlationId: options.correlationId, at: Date.now() });
      return true;
    },
  };
  const connection = {
    replyLanes: { acquire: async () => lane, release: () => undefined },
    isDeclared: () => declared,
    declareExchange: () => (asked.declarations++, declaration),
  } as unknown as Connection;
  const reply = (correlationId: string): void =>
    listener?.reply({ content: Buffer.from('{"type":"result","content":{"type":"success","value":1}}'), properties: { correlationId, headers: undefined }, fields: {} } as unknown as ConsumeMessage);
  return { connection, published, asked, releaseDeclaration, openChannel, reply };
}

const request = { exchange: { name: 'x', type: 'direct' }, key: 'k', content: Buffer.from('{}'), contentType: 'application/json', what: 'the test call' } as never;
const decoder = { decode: (b: Buffer) => JSON.parse(b.toString()) };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const until = async (what: string, check: () => boolean): Promise<void> => {
  for (let i = 0; !check(); i++) {
    if (i > 2000) throw new Error(`never: ${what}`);
    await sleep(5);
  }
};

test('a try whose exchange declaration outlasted its deadline is not published: only the current try goes out', async (t) => {
  const f = fakeConnection();
  f.openChannel();
  // 400 ms a try: time enough to answer try 3 once its publish is seen, on a busy machine too.
  const call = rpcCall(f.connection, request, { timeoutMs: 400, maxRetry: 2, decoder });
  // The declaration outlasts tries 1 and 2: it resolves while try 3 (the last) is current.
  await until('try 3 waits for the declaration', () => f.asked.declarations === 3);
  f.releaseDeclaration();
  await until('a publish', () => f.published.length > 0);
  f.reply(f.published[0]!.correlationId);
  const result = await call;
  t.true(result.ok, 'the current try is answered');
  t.is(f.published.length, 1, 'one publish: tries 1 and 2 were superseded before their declaration resolved');
});

test('tries queued while the channel was not open are not all published when it opens: only the current one', async (t) => {
  const f = fakeConnection();
  f.releaseDeclaration();
  const call = rpcCall(f.connection, request, { timeoutMs: 100, maxRetry: 2, decoder });
  await until('try 3 waits for the channel', () => f.asked.publishes === 3);
  f.openChannel();
  const result = await call;
  t.true(isCallTimeout(result), 'nothing answered: the call times out on schedule');
  t.is(f.published.length, 1, 'tries 1 and 2, past their deadline, are dropped; try 3 went out');
});

test('a call that ended is not published when its declaration resolves', async (t) => {
  const f = fakeConnection();
  f.openChannel();
  const result = await rpcCall(f.connection, request, { timeoutMs: 50, maxRetry: 1, decoder });
  t.true(isCallTimeout(result));
  f.releaseDeclaration();
  await sleep(20);
  t.deepEqual(f.published, [], 'nothing is sent after the caller got its TimeoutError');
});
