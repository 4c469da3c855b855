/**
 * The error codes of lib/errors.ts against docs/errors.md, the code each error class
 * carries, and `instanceof` across two copies of the module (STYLE practices 4 and 5).
 */
import { readFileSync } from 'node:fs';
import test from 'ava';
import { ClosedError, ErrorCodes, ExitScheduler, FilterError, PostageError, RejectMessage, type ErrorCode } from 'postage';

type ErrorsModule = typeof import('../../lib/errors.js');

const docs = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
/** Codes documented with their own `### \`CODE\`` heading. */
const documented = [...docs.matchAll(/^### `(POSTAGE_ERR_[A-Z0-9_]+)`$/gm)].map((m) => m[1] as string);
const codes = Object.keys(ErrorCodes) as ErrorCode[];

/**
 * A second copy of the module, as a plugin bundling its own `postage` would load: the query
 * string makes Node evaluate the same file again as a distinct module with distinct classes.
 */
async function secondCopy(): Promise<ErrorsModule> {
  return (await import(new URL('../../dist/lib/errors.js?copy=2', import.meta.url).href)) as ErrorsModule;
}

test('every code in ErrorCodes is documented in docs/errors.md under its own heading', (t) => {
  const missing = codes.filter((code) => !documented.includes(code));
  t.deepEqual(missing, [], `add a "### \`CODE\`" section to docs/errors.md for: ${missing.join(', ')}`);
});

test('docs/errors.md documents no code that ErrorCodes lacks, and each once', (t) => {
  t.deepEqual(
    documented.filter((code) => !(code in ErrorCodes)),
    [],
    'a documented code is not in ErrorCodes (retired codes keep their entry and are never reused)',
  );
  t.deepEqual(
    documented.filter((code, i) => documented.indexOf(code) !== i),
    [],
  );
});

test('each documented section quotes the one-line meaning from ErrorCodes', (t) => {
  for (const code of codes) {
    const section = (docs.split(/^### /m).find((s) => s.startsWith(`\`${code}\``)) ?? '').replaceAll('`', '');
    t.true(section.toLowerCase().includes(ErrorCodes[code].replace(/ \(\w+\)$/, '').toLowerCase()), `${code}: the docs section should state "${ErrorCodes[code]}"`);
  }
});

test('codes are POSTAGE_ERR_* with a one-line meaning', (t) => {
  t.true(codes.length > 0);
  for (const code of codes) {
    t.regex(code, /^POSTAGE_ERR_[A-Z0-9_]+$/);
    t.regex(ErrorCodes[code], /^[^\n]{5,}$/, `${code} needs a one-line meaning`);
  }
});

const subclasses = [
  { cls: ClosedError, make: () => new ClosedError('connection', 'quit'), code: 'POSTAGE_ERR_CLOSED' },
  { cls: FilterError, make: () => new FilterError(), code: 'POSTAGE_ERR_FILTER' },
  { cls: RejectMessage, make: () => new RejectMessage(), code: 'POSTAGE_ERR_REJECT' },
  { cls: ExitScheduler, make: () => new ExitScheduler(), code: 'POSTAGE_ERR_EXIT_SCHEDULER' },
] as const;

for (const { cls, make, code } of subclasses) {
  test(`${cls.name} carries ${code}, its own name, and is a PostageError and an Error`, (t) => {
    const err = make();
    t.is(err.code, code);
    t.true(code in ErrorCodes);
    t.is(err.name, cls.name);
    t.true(err instanceof cls);
    t.true(err instanceof PostageError);
    t.true(err instanceof Error);
    t.true(Object.isFrozen(err.details));
  });
}

test('ClosedError names what was closed and why, in details and message', (t) => {
  const err = new ClosedError('consumer', 'restart');
  t.deepEqual({ ...err.details }, { what: 'consumer', reason: 'restart' });
  t.regex(err.message, /consumer.*restart/);
});

test('PostageError keeps its code, structured details and cause', (t) => {
  const cause = new SyntaxError('bad json');
  const err = new PostageError('POSTAGE_ERR_INVALID_ARGUMENT', 'prefetch: must be positive', { key: 'prefetch', value: -1 }, { cause });
  t.is(err.code, 'POSTAGE_ERR_INVALID_ARGUMENT');
  t.is(err.name, 'PostageError');
  t.deepEqual({ ...err.details }, { key: 'prefetch', value: -1 });
  t.is(err.cause, cause);
});

test('the error classes are distinct: one subclass is not another', (t) => {
  t.false(new FilterError() instanceof RejectMessage);
  t.false(new RejectMessage() instanceof FilterError);
  t.false(new ExitScheduler() instanceof ClosedError);
  t.false(new PostageError('POSTAGE_ERR_FILTER', 'x') instanceof FilterError);
});

test('instanceof rejects non-errors without throwing', (t) => {
  for (const value of [null, undefined, 0, 'POSTAGE_ERR_FILTER', {}, new Error('plain'), { code: 'POSTAGE_ERR_FILTER' }]) {
    t.false(value instanceof PostageError);
    t.false(value instanceof FilterError);
  }
});

test('a second copy of the module really has its own classes', async (t) => {
  const Copy = await secondCopy();
  t.not(Copy.FilterError, FilterError);
  t.not(Copy.PostageError, PostageError);
  t.false(Object.getPrototypeOf(new Copy.FilterError()) === FilterError.prototype);
});

test('instanceof works across two copies of the module, both ways', async (t) => {
  const Copy = await secondCopy();
  t.true(new Copy.FilterError() instanceof FilterError);
  t.true(new FilterError() instanceof Copy.FilterError);
  t.true(new Copy.RejectMessage() instanceof RejectMessage);
  t.true(new Copy.ExitScheduler() instanceof ExitScheduler);
  t.true(new Copy.ClosedError('connection', 'quit') instanceof ClosedError);
  t.true(new Copy.ClosedError('connection', 'quit') instanceof PostageError);
  t.true(new Copy.PostageError('POSTAGE_ERR_TIMEOUT', 'late') instanceof PostageError);
  t.false(new Copy.FilterError() instanceof RejectMessage);
  t.false(new Copy.PostageError('POSTAGE_ERR_FILTER', 'x') instanceof FilterError);
  t.is(new Copy.FilterError().code, new FilterError().code);
});

test('a user subclass keeps the ordinary prototype meaning of instanceof', (t) => {
  class SkipLowPriority extends FilterError {}
  t.true(new SkipLowPriority() instanceof SkipLowPriority);
  t.true(new SkipLowPriority() instanceof FilterError);
  t.true(new SkipLowPriority() instanceof PostageError);
  t.false(new FilterError() instanceof SkipLowPriority);
  t.is(new SkipLowPriority().name, 'SkipLowPriority');
  t.is(new SkipLowPriority().code, 'POSTAGE_ERR_FILTER');
});
