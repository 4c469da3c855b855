/**
 * The counters (and histograms, whose buckets are counters) one generation of the daemon
 * hands to the next across a re-exec, in `POSTAGED_STATE`, so that they never go back to
 * zero while the process lives: `rate()` and `increase()` see one unbroken counter, as if
 * nothing had restarted (see daemon/metrics.ts for why they are carried rather than reset).
 *
 * The environment is not a database: the values travel in a compact form (one tuple per
 * series, zero series left out, histogram sample names shortened to their suffix), and past
 * `MAX_CARRIED_CHARS` the histograms are dropped first (they reset, which Prometheus copes
 * with), then everything, rather than an exec failing on an oversized environment.
 */

/** One value as prom-client's `getMetricsAsJSON()` gives it. */
export interface MetricValueJson {
  value: number;
  labels: Record<string, string | number>;
  /** Histograms: `<name>_bucket`, `<name>_sum`, `<name>_count`; absent for counters. */
  metricName?: string;
}

/** One metric as prom-client's `getMetricsAsJSON()` gives it (the fields the carry uses). */
export interface MetricJson {
  name: string;
  help: string;
  type: string;
  aggregator?: string;
  values: MetricValueJson[];
}

/** `[suffix of the sample name ('' for a counter, 'bucket', 'sum', 'count'), labels, value]` */
type CarriedValue = [string, Record<string, string | number>, number];
/** `[name, type, help, values]` */
export type CarriedMetric = [string, 'counter' | 'histogram', string, CarriedValue[]];

/** Past this many characters of JSON the histograms are left behind (Linux caps one variable at 128 KiB). */
export const MAX_CARRIED_CHARS = 48 * 1024;

/** The labels of a histogram sample without `le`: which series it belongs to. */
function seriesKey(labels: Record<string, string | number>): string {
  return JSON.stringify(Object.entries(labels).filter(([k]) => k !== 'le').sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** The metrics among `json` named in `names`, compacted; series that are still zero are left out. */
export function toCarried(json: readonly MetricJson[], names: ReadonlySet<string>): { carried: CarriedMetric[]; dropped: string[] } {
  const out: CarriedMetric[] = [];
  for (const metric of json) {
    if (!names.has(metric.name) || (metric.type !== 'counter' && metric.type !== 'histogram')) continue;
    let values = metric.values;
    if (metric.type === 'histogram') {
      const used = new Set(values.filter((v) => v.metricName === `${metric.name}_count` && v.value > 0).map((v) => seriesKey(v.labels)));
      values = values.filter((v) => used.has(seriesKey(v.labels)));
    } else values = values.filter((v) => v.value > 0);
    if (values.length === 0) continue;
    const compact = values.map((v): CarriedValue => [v.metricName === undefined ? '' : v.metricName.slice(metric.name.length + 1), { ...v.labels }, v.value]);
    out.push([metric.name, metric.type, metric.help, compact]);
  }
  const dropped: string[] = [];
  let carried = out;
  if (JSON.stringify(carried).length > MAX_CARRIED_CHARS) {
    dropped.push(...carried.filter((m) => m[1] === 'histogram').map((m) => m[0]));
    carried = carried.filter((m) => m[1] !== 'histogram');
  }
  if (JSON.stringify(carried).length > MAX_CARRIED_CHARS) {
    dropped.push(...carried.map((m) => m[0]));
    carried = [];
  }
  return { carried, dropped };
}

function isLabels(x: unknown): x is Record<string, string | number> {
  return x !== null && typeof x === 'object' && !Array.isArray(x) && Object.values(x).every((v) => typeof v === 'string' || typeof v === 'number');
}

function isCarriedMetric(x: unknown): x is CarriedMetric {
  if (!Array.isArray(x) || x.length !== 4) return false;
  const [name, type, help, values] = x as unknown[];
  return (
    typeof name === 'string' &&
    (type === 'counter' || type === 'histogram') &&
    typeof help === 'string' &&
    Array.isArray(values) &&
    values.every((v) => Array.isArray(v) && v.length === 3 && typeof v[0] === 'string' && isLabels(v[1]) && typeof v[2] === 'number' && Number.isFinite(v[2]) && v[2] >= 0)
  );
}

/** Whether a value read back from the environment has the carried shape. */
export function isCarried(value: unknown): value is CarriedMetric[] {
  return Array.isArray(value) && value.every(isCarriedMetric);
}

/** Back to prom-client's JSON form, ready for `AggregatorRegistry.aggregate` with the live values. */
export function fromCarried(carried: readonly CarriedMetric[]): MetricJson[] {
  return carried.map(([name, type, help, values]) => ({
    name,
    type,
    help,
    aggregator: 'sum',
    values: values.map(([suffix, labels, value]) => ({ value, labels: { ...labels }, ...(suffix === '' ? {} : { metricName: `${name}_${suffix}` }) })),
  }));
}
