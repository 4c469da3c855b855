import test from 'ava';
import { FilterError, GenericApplication, Handler, MessageFilter, MessageHandler, MessageHandlerFullBody, MessageProcessor, RpcHandler } from 'postage';
import { buildHandlerTable } from '../../../dist/lib/processing/handler-table.js';

const keys = (cls: Function) => [...buildHandlerTable(cls, MessageProcessor).entries()].map(([k, v]) => `${k}=${v.map((e) => e.label).join(',')}`);

test('defaults: quit and restart on every processor; ping, join_group, leave_group on applications', (t) => {
  t.deepEqual(keys(MessageProcessor), ['message|command|quit=MessageProcessor.msgQuit', 'message|command|restart=MessageProcessor.msgRestart']);
  const app = keys(GenericApplication);
  t.true(app.includes('rpc|command|ping=GenericApplication.msgPing'));
  t.true(app.includes('message|command|join_group=GenericApplication.msgJoinGroup'));
  t.true(app.includes('message|command|leave_group=GenericApplication.msgLeaveGroup'));
});

test('the plain-JS form registers the same routes as decorators, filters in stacked order', (t) => {
  const f1 = (d: unknown) => d;
  const f2 = (d: unknown) => d;
  class Js extends MessageProcessor {
    static handlers = {
      a: MessageHandler('command', 'a'),
      b: [MessageFilter(f1), MessageFilter(f2), RpcHandler('command', 'b')],
      c: MessageHandlerFullBody('status'),
    };
  }
  class Ts extends MessageProcessor {
    @MessageHandler('command', 'a') a(): void {}
    @MessageFilter(f1) @MessageFilter(f2) @RpcHandler('command', 'b') b(): void {}
  }
  const js = buildHandlerTable(Js, MessageProcessor);
  const ts = buildHandlerTable(Ts, MessageProcessor);
  t.deepEqual(js.get('rpc|command|b')?.[0]?.filters.map((f) => f.fn), [f2, f1]);
  t.deepEqual(ts.get('rpc|command|b')?.[0]?.filters.map((f) => f.fn), [f2, f1]);
  t.is(js.get('message|status|*')?.[0]?.receives, 'body');
});

test('an undecorated override keeps the inherited route; a decorated one replaces it', (t) => {
  class Base extends MessageProcessor {
    @MessageHandler('command', 'x') onX(): void {}
  }
  class Plain extends Base {
    override onX(): void {}
  }
  class Redecorated extends Base {
    @MessageHandler('command', 'y') override onX(): void {}
  }
  t.deepEqual(buildHandlerTable(Plain, MessageProcessor).get('message|command|x')?.map((e) => e.target), ['onX']);
  t.is(buildHandlerTable(Redecorated, MessageProcessor).get('message|command|x'), undefined);
  t.truthy(buildHandlerTable(Redecorated, MessageProcessor).get('message|command|y'));
});

test('Handler classes register from static fields', (t) => {
  class WithClass extends MessageProcessor {
    @MessageHandler('command', 'k') static K = class extends Handler {};
  }
  t.is(typeof buildHandlerTable(WithClass, MessageProcessor).get('message|command|k')?.[0]?.target, 'function');
});

test('a bad static handlers entry is a clear error', (t) => {
  class Bad extends MessageProcessor {
    static handlers = { x: 'nope' };
  }
  t.throws(() => buildHandlerTable(Bad, MessageProcessor), { message: /Bad\.handlers\.x/ });
});

test('FilterError is a PostageError with its code', (t) => {
  t.is(new FilterError().code, 'POSTAGE_ERR_FILTER');
});
