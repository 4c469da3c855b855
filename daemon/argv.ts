/**
 * The command line of `postaged`: the flags come from the schema's `arg` entries, plus
 * `--config`, `--print-config`, `--help` and `--version`. Parsing is strict: an unknown flag
 * or a stray argument is a configuration error (exit 78), like a bad key.
 */
import { parseArgs } from 'node:util';
import { ConfigError, schemaEntries } from './config.js';

export interface CommandLine {
  help: boolean;
  version: boolean;
  printConfig: boolean;
  configFile: string | undefined;
  /** Values by schema key (`pluginDir`, `log.level`, ...). */
  overrides: Record<string, string | boolean>;
}

function isBooleanKey(format: unknown): boolean {
  return format === 'postaged-bool';
}

/** Parses `argv` (without node and the script). Throws `ConfigError` on a bad command line. */
export function parseCommandLine(argv: readonly string[]): CommandLine {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean', short: 'V' },
    'print-config': { type: 'boolean' },
    config: { type: 'string', short: 'c' },
  };
  const byArg = new Map<string, { key: string; negated: boolean }>();
  for (const { key, item } of schemaEntries()) {
    if (!item.arg) continue;
    if (isBooleanKey(item.format)) {
      options[item.arg] = { type: 'boolean' };
      options[`no-${item.arg}`] = { type: 'boolean' };
      byArg.set(`no-${item.arg}`, { key, negated: true });
    } else {
      options[item.arg] = { type: 'string' };
    }
    byArg.set(item.arg, { key, negated: false });
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false });
  } catch (err) {
    throw new ConfigError('(command line)', `command line: ${(err as Error).message} (see --help)`);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const overrides: Record<string, string | boolean> = {};
  for (const [flag, value] of Object.entries(values)) {
    const target = byArg.get(flag);
    if (!target || value === undefined) continue;
    overrides[target.key] = target.negated ? !value : value;
  }
  return {
    help: values['help'] === true,
    version: values['version'] === true,
    printConfig: values['print-config'] === true,
    configFile: typeof values['config'] === 'string' ? values['config'] : undefined,
    overrides,
  };
}

/** Placeholder shown in --help for each flag's value. */
const METAVAR: Record<string, string> = { plugins: 'DIR', name: 'NAME', host: 'HOST', vhost: 'VHOST', 'drain-timeout': 'MS', 'log-level': 'LEVEL', 'log-format': 'FORMAT' };

function formatDefault(value: unknown): string {
  if (Array.isArray(value)) return value.join(',');
  return String(value);
}

/** `--help`: usage, then every flag and environment variable with its default, from the schema. */
export function helpText(version: string): string {
  const lines = [
    `postaged ${version}: hosts Postage GenericApplication plugins on RabbitMQ`,
    '',
    'Usage: postaged [--plugins DIR] [--config FILE] [--name NAME] [options]',
    '',
    'Options:',
    '  -c, --config FILE          JSON config file (comments allowed); env POSTAGED_CONFIG',
    '      --print-config         print the effective configuration (secrets redacted) and exit',
    '  -h, --help                 print this help and exit',
    '  -V, --version              print the version and exit',
  ];
  const entries = schemaEntries();
  for (const { key, item } of entries) {
    if (!item.arg) continue;
    const flag = isBooleanKey(item.format) ? `--[no-]${item.arg}` : `--${item.arg} ${METAVAR[item.arg] ?? 'VALUE'}`;
    const choices = Array.isArray(item.format) ? ` ${item.format.join('|')},` : '';
    lines.push(`      ${flag.padEnd(23)}${key}:${choices} default ${formatDefault(item.default) || '""'}`);
  }
  lines.push('', 'Environment (below the command line, above the config file):');
  for (const { key, item } of entries) {
    if (!item.env) continue;
    const shown = item.sensitive ? '(secret)' : formatDefault(item.default) || '""';
    lines.push(`  ${item.env.padEnd(31)}${key}: default ${shown}`);
  }
  lines.push('', 'Exit codes: 0 stopped cleanly, 1 forced or failed, 69 broker unreachable, 78 configuration error.');
  lines.push('Every key is documented in docs/config.md.');
  return `${lines.join('\n')}\n`;
}
