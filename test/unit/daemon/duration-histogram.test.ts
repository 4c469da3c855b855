import test from 'ava';
import { Histogram, Registry } from 'prom-client';
import { DurationHistogram } from '../../../daemon/duration-histogram.js';

test('reads back exactly as prom-client\'s own Histogram, bucket by bucket (le is an upper bound, inclusive)', async (t) => {
  const buckets = [0.001, 0.01, 0.1, 1];
  const mine = new Registry();
  const theirs = new Registry();
  const fast = new DurationHistogram({ name: 'd_seconds', help: 'h', labelNames: ['app', 'outcome'], buckets, registers: [mine] });
  const ref = new Histogram({ name: 'd_seconds', help: 'h', labelNames: ['app', 'outcome'], buckets, registers: [theirs] });
  const observations: Array<[string, string, number]> = [
    ['a', 'handled', 0.0005],
    ['a', 'handled', 0.001],
    ['a', 'handled', 0.05],
    ['a', 'failed', 2],
    ['b', 'handled', 1],
    ['b', 'handled', 0.1000001],
  ];
  for (const [app, outcome, v] of observations) {
    fast.series({ app, outcome }).observe(v);
    ref.labels(app, outcome).observe(v);
  }
  t.is(await mine.metrics(), await theirs.metrics());
  const json = (await mine.getMetricsAsJSON())[0];
  t.is(json?.type as unknown as string, 'histogram');
});
