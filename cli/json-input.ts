/**
 * JSON parameters of `send` / `rpc`: from the command line, a file (`@path`) or stdin (`-`),
 * with an error that shows where the JSON is invalid. V8's own messages name a position only
 * for some mistakes ("Unexpected token '}', ... is not valid JSON" names none), so a small
 * strict scanner locates the first error once `JSON.parse` has refused the text.
 */
import { readFile } from 'node:fs/promises';
import { DEFAULT_MAX_BYTES, JsonEncoder, MessageCommand } from 'postage';
import { usageError } from './exit-codes.js';

/** Where a JSON text is invalid. Position and column count UTF-16 code units from 0 and 1. */
export interface JsonSyntaxIssue {
  reason: string;
  position: number;
  line: number;
  column: number;
}

class Located extends Error {
  constructor(
    readonly reason: string,
    readonly position: number,
  ) {
    super(reason);
  }
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/** Finds the first syntax error of `text` (RFC 8259), or `undefined` when it is valid JSON. */
export function locateJsonError(text: string): JsonSyntaxIssue | undefined {
  let pos = 0;
  const fail = (reason: string, at = pos): never => {
    throw new Located(reason, at);
  };
  const ws = (): void => {
    while (pos < text.length && ' \t\n\r'.includes(text[pos] as string)) pos++;
  };
  const describe = (c: string | undefined): string => (c === undefined ? 'end of input' : `character ${JSON.stringify(c)}`);
  const literal = (word: string): void => {
    for (let i = 0; i < word.length; i++) if (text[pos + i] !== word[i]) fail(`unexpected ${describe(text[pos + i])} in "${word}"`, pos + i);
    pos += word.length;
  };
  const string = (): void => {
    pos++; // opening quote
    for (;;) {
      const c = text[pos];
      if (c === undefined) fail('unterminated string');
      if (c === '"') {
        pos++;
        return;
      }
      if (c === '\\') {
        const e = text[pos + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(pos + 2, pos + 6))) fail('invalid \\u escape: four hex digits expected', pos);
          pos += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) pos += 2;
        else fail(`invalid escape "\\${e ?? ''}"`);
        continue;
      }
      if ((c as string) < ' ') fail('control character in a string (write it as an escape such as \\n)');
      pos++;
    }
  };
  const value = (): void => {
    ws();
    const c = text[pos];
    if (c === '{') return object();
    if (c === '[') return array();
    if (c === '"') return string();
    if (c === 't') return literal('true');
    if (c === 'f') return literal('false');
    if (c === 'n') return literal('null');
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) {
      NUMBER.lastIndex = pos;
      const m = NUMBER.exec(text);
      if (!m) fail('invalid number');
      pos += (m as RegExpExecArray)[0].length;
      return;
    }
    if (c === "'") fail('strings must use double quotes');
    fail(`unexpected ${describe(c)}: a JSON value was expected`);
  };
  const object = (): void => {
    pos++;
    ws();
    if (text[pos] === '}') {
      pos++;
      return;
    }
    for (;;) {
      ws();
      if (text[pos] !== '"') fail(text[pos] === '}' ? 'trailing comma before "}"' : `expected a double-quoted property name, found ${describe(text[pos])}`);
      string();
      ws();
      if (text[pos] !== ':') fail(`expected ":" after the property name, found ${describe(text[pos])}`);
      pos++;
      value();
      ws();
      if (text[pos] === ',') {
        pos++;
        continue;
      }
      if (text[pos] === '}') {
        pos++;
        return;
      }
      fail(`expected "," or "}" after a property value, found ${describe(text[pos])}`);
    }
  };
  const array = (): void => {
    pos++;
    ws();
    if (text[pos] === ']') {
      pos++;
      return;
    }
    for (;;) {
      ws();
      if (text[pos] === ']') fail('trailing comma before "]"');
      value();
      ws();
      if (text[pos] === ',') {
        pos++;
        continue;
      }
      if (text[pos] === ']') {
        pos++;
        return;
      }
      fail(`expected "," or "]" after an array element, found ${describe(text[pos])}`);
    }
  };
  try {
    ws();
    if (pos >= text.length) fail('empty input: a JSON value was expected');
    value();
    ws();
    if (pos < text.length) fail(`unexpected ${describe(text[pos])} after the JSON value`);
    return undefined;
  } catch (err) {
    if (!(err instanceof Located)) throw err;
    const before = text.slice(0, err.position);
    const line = before.split('\n').length;
    const column = err.position - (before.lastIndexOf('\n') + 1) + 1;
    return { reason: err.reason, position: err.position, line, column };
  }
}

/** The offending line with a caret under the column, cut to ~70 characters around it. */
function excerpt(text: string, issue: JsonSyntaxIssue): string {
  const lineText = (text.split('\n')[issue.line - 1] ?? '').replace(/\r$/, '');
  const start = Math.max(0, issue.column - 1 - 40);
  const shown = lineText.slice(start, start + 70);
  const prefix = start > 0 ? '…' : '';
  return `  ${prefix}${shown}\n  ${' '.repeat(prefix.length + issue.column - 1 - start)}^`;
}

/**
 * Parses JSON parameters; on a syntax error throws a usage error (exit 2) naming the source,
 * line, column and position, with the line and a caret.
 */
export function parseJsonParameters(text: string, source: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    const issue = locateJsonError(text) ?? { reason: 'not valid JSON', position: 0, line: 1, column: 1 };
    const bare = /^\s*[A-Za-z_]/.test(text) && !/^\s*(true|false|null)\b/.test(text);
    const hint = bare ? `\n  (a string parameter needs JSON quotes, e.g. '"${text.trim().slice(0, 20)}"')` : '';
    throw usageError(`invalid JSON parameters (${source}) at line ${issue.line}, column ${issue.column} (position ${issue.position}): ${issue.reason}\n${excerpt(text, issue)}${hint}`);
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Reads the `[json]` argument: omitted → `{}`; `-` → stdin; `@path` → that file;
 * anything else is the JSON text itself.
 */
export async function readParameters(arg: string | undefined): Promise<unknown> {
  if (arg === undefined) return {};
  if (arg === '-') return parseJsonParameters(await readStdin(), 'stdin');
  if (arg.startsWith('@')) {
    const path = arg.slice(1);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      throw usageError(`cannot read the parameters file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    return parseJsonParameters(text, `file ${path}`);
  }
  return parseJsonParameters(arg, 'command line');
}

/**
 * Refuses (usage error, exit 2, before connecting) parameters whose message body would be
 * larger than the limit Postage receivers accept (DEFAULT_MAX_BYTES, 1 MiB): a receiver
 * would refuse it unread (dead-lettered with reason `too-large`), silently for `send`.
 */
export function checkBodySize(name: string, parameters: unknown, limit = DEFAULT_MAX_BYTES): void {
  const size = new JsonEncoder().encode(new MessageCommand(name, parameters).body).length;
  if (size > limit) {
    throw usageError(`parameters too large: the message body would be ${size} bytes, over the ${limit}-byte limit (${(limit / 1024 / 1024).toFixed(0)} MiB) that Postage receivers accept: it would be refused unread (dead-lettered as too-large)`);
  }
}
