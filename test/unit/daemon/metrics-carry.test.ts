import test from 'ava';
import { fromCarried, isCarried, MAX_CARRIED_CHARS, toCarried, type MetricJson } from '../../../daemon/metrics-carry.js';

const json: MetricJson[] = [
  { name: 'c_total', help: 'a counter', type: 'counter', aggregator: 'sum', values: [{ value: 3, labels: { app: 'a' } }, { value: 0, labels: { app: 'b' } }] },
  {
    name: 'h_seconds',
    help: 'a histogram',
    type: 'histogram',
    aggregator: 'sum',
    values: [
      { value: 1, labels: { le: 0.1, app: 'a' }, metricName: 'h_seconds_bucket' },
      { value: 2, labels: { le: '+Inf', app: 'a' }, metricName: 'h_seconds_bucket' },
      { value: 0.5, labels: { app: 'a' }, metricName: 'h_seconds_sum' },
      { value: 2, labels: { app: 'a' }, metricName: 'h_seconds_count' },
      { value: 0, labels: { le: 0.1, app: 'z' }, metricName: 'h_seconds_bucket' },
      { value: 0, labels: { le: '+Inf', app: 'z' }, metricName: 'h_seconds_bucket' },
      { value: 0, labels: { app: 'z' }, metricName: 'h_seconds_sum' },
      { value: 0, labels: { app: 'z' }, metricName: 'h_seconds_count' },
    ],
  },
  { name: 'g', help: 'a gauge', type: 'gauge', values: [{ value: 7, labels: {} }] },
  { name: 'other_total', help: 'not carried', type: 'counter', values: [{ value: 9, labels: {} }] },
];

test('only the named counters and histograms travel, without their zero series, and come back as prom-client JSON', (t) => {
  const { carried, dropped } = toCarried(json, new Set(['c_total', 'h_seconds', 'g']));
  t.deepEqual(dropped, []);
  t.true(isCarried(JSON.parse(JSON.stringify(carried))));
  const back = fromCarried(carried);
  t.deepEqual(
    back.map((m) => m.name),
    ['c_total', 'h_seconds'],
  );
  t.deepEqual(back[0]?.values, [{ value: 3, labels: { app: 'a' } }]);
  t.deepEqual(back[1]?.values, json[1]!.values.slice(0, 4), 'a histogram series whose count is 0 is left out; the others keep every bucket');
});

test('past the size cap the histograms go first, then everything', (t) => {
  const many = (n: number, type: 'counter' | 'histogram'): MetricJson => ({
    name: `${type}_x`,
    help: '',
    type,
    values: Array.from({ length: n }, (_, i) => (type === 'counter' ? { value: 1, labels: { app: `app-${i}` } } : { value: 1, labels: { app: `app-${i}` }, metricName: `${type}_x_count` })),
  });
  const big = toCarried([many(10, 'counter'), many(MAX_CARRIED_CHARS / 20, 'histogram')], new Set(['counter_x', 'histogram_x']));
  t.deepEqual(big.dropped, ['histogram_x']);
  t.is(big.carried.length, 1);
  const huge = toCarried([many(MAX_CARRIED_CHARS / 10, 'counter')], new Set(['counter_x']));
  t.deepEqual(huge, { carried: [], dropped: ['counter_x'] });
});

test('a damaged carried value is recognised', (t) => {
  t.false(isCarried({}));
  t.false(isCarried([['x', 'gauge', '', []]]));
  t.false(isCarried([['x', 'counter', '', [['', { app: 'a' }, -1]]]]));
  t.true(isCarried([]));
});
