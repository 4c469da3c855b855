import test from 'ava';
import { RestartState } from '../../../daemon/restart-state.js';

test('a first generation starts fresh', (t) => {
  const s = RestartState.fromEnv(undefined, 60_000, new Date('2030-01-01T00:00:00Z'));
  t.is(s.generation, 1);
  t.is(s.restarts, 0);
  t.is(s.startedAt, '2030-01-01T00:00:00.000Z');
  t.is(s.lastRestartReason, null);
  t.is(s.problem, undefined);
});

test('a restart id is claimed once, in this generation and the next', (t) => {
  const g1 = RestartState.fromEnv(undefined, 60_000);
  t.true(g1.claim('m1'));
  t.false(g1.claim('m1'));
  const g2 = RestartState.fromEnv(g1.next('restart command to x'), 60_000);
  t.is(g2.generation, 2);
  t.is(g2.restarts, 1);
  t.is(g2.startedAt, g1.startedAt);
  t.is(g2.lastRestartReason, 'restart command to x');
  t.false(g2.claim('m1'), 'a copy delivered to the next generation is not acted on');
  t.true(g2.claim('m2'));
  const g3 = RestartState.fromEnv(g2.next('again'), 60_000);
  t.is(g3.generation, 3);
  t.false(g3.claim('m1'));
  t.false(g3.claim('m2'));
});

test('ids older than the window are forgotten', (t) => {
  const old = JSON.stringify({ generation: 4, startedAt: '2030-01-01T00:00:00.000Z', lastRestartReason: 'x', handled: [['old', Date.now() - 120_000], ['new', Date.now()]] });
  const s = RestartState.fromEnv(old, 60_000);
  t.true(s.claim('old'));
  t.false(s.claim('new'));
  t.is(s.generation, 4);
});

test('at most 256 ids are carried', (t) => {
  const s = RestartState.fromEnv(undefined, 60_000);
  for (let i = 0; i < 400; i++) s.claim(`id-${i}`);
  const carried = JSON.parse(s.next('r')) as { handled: Array<[string, number]> };
  t.is(carried.handled.length, 256);
  t.is(carried.handled.at(-1)?.[0], 'id-399', 'the newest are kept');
});

test('damaged state is ignored, with the reason', (t) => {
  for (const value of ['{', '{"generation":0}', '{"generation":2,"startedAt":"x","lastRestartReason":null,"handled":[]}', '[]']) {
    const s = RestartState.fromEnv(value, 60_000);
    t.is(s.generation, 1, value);
    t.regex(s.problem ?? '', /POSTAGED_STATE/);
  }
});

test('groups and quit applications travel to the next generation', (t) => {
  const g1 = RestartState.fromEnv(undefined, 60_000);
  g1.setQuit('gone', true);
  const g2 = RestartState.fromEnv(g1.next('r', { echo: ['blue', 'red'], other: [] }), 60_000);
  t.deepEqual(g2.groupsOf('echo'), ['blue', 'red']);
  t.deepEqual(g2.groupsOf('other'), [], 'an application that left every group is known to have none');
  t.is(g2.groupsOf('never-ran'), undefined, 'an application not running then keeps its configured groups');
  t.true(g2.isQuit('gone'));
  g2.setQuit('gone', false);
  t.false(RestartState.fromEnv(g2.next('r'), 60_000).isQuit('gone'), 'a changed file brings it back for good');
});

test('each generation knows when it started; the first one knows when the process did', (t) => {
  const before = Date.now();
  const s = RestartState.fromEnv(RestartState.fromEnv(undefined, 60_000, new Date('2030-01-01T00:00:00Z')).next('r'), 60_000);
  t.is(s.startedAt, '2030-01-01T00:00:00.000Z');
  t.true(s.generationStartedAt >= before && s.generationStartedAt <= Date.now());
});
