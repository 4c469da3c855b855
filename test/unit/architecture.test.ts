/**
 * The import rules of STYLE.md (practice 1 and the layout table), checked on the sources:
 * every `import`, `export … from`, `import()` and `import('x').T` of every .ts file under
 * lib/, daemon/, cli/ and bench/ is read with the TypeScript parser and its target judged.
 *
 *   lib/wire        → lib/errors.ts, lib/env.ts            (+ node:*)
 *   lib/scheduler   → lib/errors.ts, lib/logger.ts         (+ node:*)
 *   lib/amqp        → wire, errors, env, logger            (+ node:*, amqplib)
 *   lib/messaging   → amqp, wire, errors, env, logger      (+ node:*, amqplib)
 *   lib/processing  → messaging, scheduler, amqp, wire, errors, logger (+ node:*, amqplib)
 *   lib/application → anything in lib/                     (+ node:*, amqplib)
 *   lib/errors.ts, lib/env.ts, lib/logger.ts → nothing else in lib/ (+ node:*)
 *   lib/index.ts, lib/internal.ts → anything in lib/ (the public and the internal surface)
 *   lib/ never imports daemon/, cli/ or anything outside lib/; its packages are node:*,
 *   amqplib and the winston *type* only.
 *   daemon/ and cli/ reach the library only through 'postage' and 'postage/internal' (never a
 *   relative path into lib/ or dist/); cli/ never imports daemon/ and daemon/ never imports cli/.
 *   bench/ → 'postage', 'postage/internal', amqplib, node:*, bench/ itself, and daemon/ (the
 *   benchmarks measure the daemon's parts too, e.g. its metrics on the consume path).
 * Type-only imports count: a type pointing upward is still an upward dependency.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import ts from 'typescript';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * Violations known and accepted for now, each with the reason and who fixes it. Keys are
 * `from -> to` (repo-relative files, or the package name). A test below fails when an
 * entry no longer matches a real violation, so the list cannot go stale silently.
 */
const KNOWN_VIOLATIONS: Readonly<Record<string, string>> = {};

interface Import {
  /** Repo-relative path of the importing file. */
  from: string;
  specifier: string;
  typeOnly: boolean;
  line: number;
}

function tsFiles(dir: string): string[] {
  const abs = path.join(root, dir);
  let entries;
  try {
    entries = readdirSync(abs, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((e) => {
    const rel = path.posix.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : tsFiles(rel);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [rel] : [];
  });
}

/** Every module specifier a file refers to, with whether the reference is type-only. */
function importsOf(file: string, text: string): Import[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: Import[] = [];
  const add = (node: ts.Node, spec: ts.Expression | undefined, typeOnly: boolean): void => {
    if (!spec || !ts.isStringLiteralLike(spec)) return;
    found.push({ from: file, specifier: spec.text, typeOnly, line: source.getLineAndCharacterOfPosition(node.getStart()).line + 1 });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      const clause = node.importClause;
      const allTypes =
        clause !== undefined &&
        (clause.isTypeOnly ||
          (clause.name === undefined && clause.namedBindings !== undefined && ts.isNamedImports(clause.namedBindings) && clause.namedBindings.elements.length > 0 && clause.namedBindings.elements.every((e) => e.isTypeOnly)));
      add(node, node.moduleSpecifier, allTypes);
    } else if (ts.isExportDeclaration(node)) {
      add(node, node.moduleSpecifier, node.isTypeOnly);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      add(node, node.moduleReference.expression, node.isTypeOnly);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      add(node, node.arguments[0], false);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      add(node, node.argument.literal as ts.Expression, true);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** The layer of a file in lib/: `wire`, `amqp`, …, or the leaf modules `errors`, `env`, `logger`, `index`. */
function layerOf(file: string): string {
  const rest = file.slice('lib/'.length);
  const slash = rest.indexOf('/');
  return slash === -1 ? rest.replace(/\.ts$/, '') : rest.slice(0, slash);
}

const LIB_ALLOWED: Readonly<Record<string, readonly string[] | 'all'>> = {
  // env.ts is a leaf that reads the environment: Python's Fingerprint read it too.
  wire: ['wire', 'errors', 'env'],
  scheduler: ['scheduler', 'errors', 'logger'],
  amqp: ['amqp', 'wire', 'errors', 'env', 'logger'],
  messaging: ['messaging', 'amqp', 'wire', 'errors', 'env', 'logger'],
  processing: ['processing', 'messaging', 'scheduler', 'amqp', 'wire', 'errors', 'logger'],
  application: 'all',
  index: 'all',
  internal: 'all',
  errors: [],
  env: [],
  logger: [],
};

/** Layers that talk to the broker and so may use amqplib. */
const AMQPLIB_LAYERS = new Set(['amqp', 'messaging', 'processing', 'application']);

function isBuiltin(spec: string): boolean {
  return spec.startsWith('node:');
}

/** The repo-relative file a relative specifier points to (`.js` written for `.ts`, as NodeNext wants). */
function resolveRelative(from: string, spec: string): string {
  const target = path.posix.normalize(path.posix.join(path.posix.dirname(from), spec));
  return target.replace(/\.js$/, '.ts');
}

/** Why `imp` breaks a rule, or undefined when it is allowed. */
function violation(imp: Import): string | undefined {
  const { from, specifier: spec } = imp;
  const top = from.split('/')[0];
  const relative = spec.startsWith('.');
  const target = relative ? resolveRelative(from, spec) : undefined;

  if (top === 'lib') {
    const layer = layerOf(from);
    if (target !== undefined) {
      if (!target.startsWith('lib/')) return `lib/ imports ${target}, outside lib/ (lib never imports daemon/, cli/ or anything else)`;
      const to = layerOf(target);
      const allowed = LIB_ALLOWED[layer];
      if (allowed === undefined) return `lib/${layer} is not a known layer: add it to the layout table and to this test`;
      if (allowed !== 'all' && !allowed.includes(to)) return `lib/${layer} may not import lib/${to} (allowed: ${allowed.filter((l) => l !== layer).join(', ') || 'nothing in lib/'})`;
      return undefined;
    }
    if (isBuiltin(spec)) return undefined;
    if (spec === 'amqplib') return AMQPLIB_LAYERS.has(layer) ? undefined : `lib/${layer} may not import amqplib (only ${[...AMQPLIB_LAYERS].join(', ')} talk to the broker)`;
    if (spec === 'winston') return imp.typeOnly ? undefined : 'lib/ may import the winston *type* only (use `import type`)';
    return `lib/ may not import the package '${spec}' (only node:*, amqplib, and the winston type)`;
  }

  if (top === 'daemon' || top === 'cli') {
    const other = top === 'daemon' ? 'cli' : 'daemon';
    if (target !== undefined) {
      if (target.startsWith('lib/') || target.startsWith('dist/')) return `${top}/ reaches the library through a relative path (${target}); import from 'postage'`;
      if (target.startsWith(`${other}/`)) return `${top}/ may not import ${other}/ (${target})`;
      if (!target.startsWith(`${top}/`)) return `${top}/ imports ${target}, outside ${top}/`;
      return undefined;
    }
    if (spec.startsWith('postage/') && spec !== 'postage/internal') return `${top}/ deep-imports '${spec}'; use 'postage' or 'postage/internal'`;
    return undefined;
  }

  if (top === 'bench') {
    if (target !== undefined) return target.startsWith('bench/') || target.startsWith('daemon/') ? undefined : `bench/ imports ${target}; use 'postage', daemon/ or bench/ helpers`;
    if (isBuiltin(spec) || spec === 'postage' || spec === 'postage/internal' || spec === 'amqplib') return undefined;
    return `bench/ may import only 'postage', 'postage/internal', amqplib and node:* (found '${spec}')`;
  }
  return undefined;
}

const sourceDirs = ['lib', 'daemon', 'cli', 'bench'];
const files = sourceDirs.flatMap(tsFiles);
const imports = files.flatMap((file) => importsOf(file, readFileSync(path.join(root, file), 'utf8')));
const keyOf = (imp: Import): string => {
  const target = imp.specifier.startsWith('.') ? resolveRelative(imp.from, imp.specifier) : imp.specifier;
  return `${imp.from} -> ${target}`;
};
const found = imports.flatMap((imp) => {
  const why = violation(imp);
  return why === undefined ? [] : [{ key: keyOf(imp), at: `${imp.from}:${imp.line}`, why }];
});

test('the parser sees the sources and their imports', (t) => {
  t.true(files.filter((f) => f.startsWith('lib/')).length >= 10, 'expected the library sources under lib/');
  const index = imports.filter((i) => i.from === 'lib/index.ts');
  t.true(index.some((i) => i.specifier === './errors.js' && !i.typeOnly));
  t.true(index.some((i) => i.specifier === './errors.js' && i.typeOnly), '`export type { … } from` is read as type-only');
});

test('the parser reads every import form', (t) => {
  const text = [
    "import a from './a.js';",
    "import type { B } from './b.js';",
    "import { type C } from './c.js';",
    "import './d.js';",
    "export { e } from './e.js';",
    "export type { F } from './f.js';",
    "const g = await import('./g.js');",
    "let h: import('./h.js').H;",
  ].join('\n');
  const got = importsOf('lib/x/y.ts', text).map((i) => `${i.specifier}${i.typeOnly ? ' (type)' : ''}`);
  t.deepEqual(got, ['./a.js', './b.js (type)', './c.js (type)', './d.js', './e.js', './f.js (type)', './g.js', './h.js (type)']);
});

test('the rules catch what they should', (t) => {
  const judge = (from: string, specifier: string, typeOnly = false): string | undefined => violation({ from, specifier, typeOnly, line: 1 });
  t.truthy(judge('lib/wire/message.ts', '../amqp/exchange.js'));
  t.is(judge('lib/wire/message.ts', '../errors.js'), undefined);
  t.is(judge('lib/wire/fingerprint.ts', '../env.js'), undefined);
  t.truthy(judge('lib/wire/fingerprint.ts', '../logger.js'));
  t.truthy(judge('lib/wire/message.ts', 'amqplib'));
  t.truthy(judge('lib/scheduler/micro-thread.ts', '../wire/message.js'));
  t.is(judge('lib/scheduler/micro-scheduler.ts', '../logger.js'), undefined);
  t.truthy(judge('lib/amqp/connection.ts', '../messaging/publisher.js'));
  t.truthy(judge('lib/messaging/generic-producer.ts', '../processing/handler.js', true));
  t.truthy(judge('lib/processing/message-processor.ts', '../application/addressing.js'));
  t.truthy(judge('lib/processing/message-processor.ts', '../env.js'));
  t.is(judge('lib/application/generic-application.ts', '../env.js'), undefined);
  t.truthy(judge('lib/errors.ts', './logger.js'));
  t.truthy(judge('lib/env.ts', '../daemon/config.js'));
  t.truthy(judge('lib/logger.ts', 'winston'));
  t.truthy(judge('lib/processing/message-processor.ts', 'prom-client'), 'metrics are the daemon\'s: the library only emits events');
  t.is(judge('lib/logger.ts', 'winston', true), undefined);
  t.truthy(judge('daemon/main.ts', '../lib/index.js'));
  t.truthy(judge('daemon/main.ts', '../cli/output.js'));
  t.truthy(judge('cli/commands/ps.ts', '../../daemon/config.js'));
  t.truthy(judge('cli/main.ts', 'postage/dist/lib/errors.js'));
  t.is(judge('cli/main.ts', 'postage/internal'), undefined);
  t.is(judge('cli/commands/ps.ts', '../output.js'), undefined);
  t.is(judge('daemon/main.ts', 'postage'), undefined);
  t.truthy(judge('bench/rpc.bench.ts', '../lib/index.js'));
  t.is(judge('bench/rpc.bench.ts', './helpers.js'), undefined);
  t.is(judge('bench/metrics.bench.ts', '../daemon/metrics.js'), undefined);
  t.truthy(judge('bench/metrics.bench.ts', '../cli/output.js'));
});

test('every import follows the layering rules of STYLE.md', (t) => {
  const unexpected = found.filter((v) => !(v.key in KNOWN_VIOLATIONS));
  t.deepEqual(
    unexpected.map((v) => `${v.at}: ${v.why}`),
    [],
    'fix the import, or (for a violation being fixed elsewhere) add it to KNOWN_VIOLATIONS with a comment',
  );
});

test('every KNOWN_VIOLATIONS entry is still a violation (remove fixed ones)', (t) => {
  const stale = Object.keys(KNOWN_VIOLATIONS).filter((key) => !found.some((v) => v.key === key));
  t.deepEqual(stale, []);
});
