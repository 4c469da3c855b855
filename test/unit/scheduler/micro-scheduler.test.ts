import test from 'ava';
import { ExitScheduler, MicroScheduler, MicroThread } from 'postage';

class Counter extends MicroThread {
  created = 0;
  steps = 0;
  constructor(private readonly limit: number, private readonly log: string[] = [], private readonly label = '') {
    super();
  }
  override create(): void {
    this.created++;
  }
  override step(): void {
    this.steps++;
    this.log.push(this.label);
    if (this.steps >= this.limit) this.stop();
  }
}

test('create() runs once, step() until the thread stops; autoquit ends run()', async (t) => {
  const s = new MicroScheduler();
  const a = new Counter(3);
  s.add(a);
  await s.run();
  t.is(a.created, 1);
  t.is(a.steps, 3);
  t.is(s.size, 0);
});

test('threads take turns: a busy thread does not starve another (quantum 0: a turn per step)', async (t) => {
  const log: string[] = [];
  const s = new MicroScheduler({ quantumMs: 0 });
  s.add(new Counter(100, log, 'a'));
  s.add(new Counter(5, log, 'b'));
  await s.run();
  const lastB = log.lastIndexOf('b');
  t.true(lastB < 12, `b finished at position ${lastB} of ${log.length}`);
});

test('ExitScheduler from a step stops every thread', async (t) => {
  class Quitter extends MicroThread {
    override step(): void {
      throw new ExitScheduler();
    }
  }
  const s = new MicroScheduler();
  const forever = new Counter(Infinity);
  s.add(forever);
  s.add(new Quitter());
  await s.run();
  t.false(forever.running);
  t.true(forever.steps < 10);
});

test('without autoquit run() waits for exit()', async (t) => {
  const s = new MicroScheduler({ autoquit: false });
  s.add(new Counter(1));
  let done = false;
  const run = s.run().then(() => (done = true));
  await new Promise((r) => setTimeout(r, 50));
  t.false(done);
  s.add(new Counter(2));
  s.exit();
  await run;
  t.true(done);
});

test('a step that throws stops only its thread', async (t) => {
  class Broken extends MicroThread {
    override step(): void {
      throw new Error('bug');
    }
  }
  const errors: string[] = [];
  const s = new MicroScheduler({ logger: { error: (m: string) => errors.push(m), warn() {}, info() {}, debug() {} } });
  const ok = new Counter(20);
  s.add(new Broken());
  s.add(ok);
  await s.run();
  t.is(ok.steps, 20);
  t.is(errors.length, 1);
});

test('with a time slice, a thread that keeps stepping still yields to the others', async (t) => {
  class Busy extends MicroThread {
    steps = 0;
    override step(): void {
      const end = performance.now() + 0.2;
      while (performance.now() < end);
      if (++this.steps >= 200) this.stop();
    }
  }
  const s = new MicroScheduler({ quantumMs: 2 });
  const busy = new Busy();
  const log: number[] = [];
  class Watcher extends MicroThread {
    // Waiting on a timer needs a real event-loop turn: only a yielding busy thread allows it.
    override async step(): Promise<void> {
      await new Promise((r) => setTimeout(r, 0));
      log.push(busy.steps);
      if (log.length >= 5) this.stop();
    }
  }
  s.add(busy);
  s.add(new Watcher());
  await s.run();
  t.is(busy.steps, 200);
  t.true(log.length === 5 && (log[4] ?? 200) < 200, `the watcher ran while the busy thread was still working: ${log.join(',')}`);
});
