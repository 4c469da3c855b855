import { brand, PostageError } from '../errors.js';
import type { FingerprintDict } from './fingerprint.js';
import type { TraceContext } from './trace-context.js';

/** A JSON value as it travels in a body. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** The body of every Postage message, exactly as it is encoded on the wire (SPEC §1). */
export interface MessageBody {
  type: string;
  name: string;
  category: 'message' | 'rpc' | string;
  version: string;
  fingerprint: Partial<FingerprintDict> & Record<string, string>;
  content: Record<string, unknown>;
  _reserved: Record<string, unknown>;
}

/**
 * The base Postage message (Python's `Message(*args, **kwds)`): type and name `none`,
 * `content.args` only when args were given, `content.kwds` only when keywords were given.
 */
export class Message {
  readonly body: MessageBody;
  /**
   * The trace context it came with (its `traceparent` header), on a received RPC reply: the
   * responder's handler span. Not part of the body.
   */
  trace: TraceContext | undefined = undefined;

  constructor(args: readonly unknown[] = [], kwds: Record<string, unknown> = {}) {
    const content: Record<string, unknown> = {};
    if (args.length > 0) content['args'] = [...args];
    if (Object.keys(kwds).length > 0) content['kwds'] = { ...kwds };
    this.body = { type: 'none', name: 'none', category: 'message', version: '2', fingerprint: {}, content, _reserved: {} };
  }

  get type(): string {
    return this.body.type;
  }

  get name(): string {
    return this.body.name;
  }

  get category(): string {
    return this.body.category;
  }

  get content(): Record<string, unknown> {
    return this.body.content;
  }

  /** Python's truthiness of a message: false only for error and exception results. */
  get ok(): boolean {
    return true;
  }

  /** Merges fields into the body's fingerprint (Python's `message.fingerprint(**kwds)`). */
  setFingerprint(fields: Partial<FingerprintDict>): this {
    const fingerprint = this.body.fingerprint;
    for (const key of Object.keys(fields)) {
      const value = fields[key as keyof FingerprintDict];
      if (value !== undefined) fingerprint[key] = typeof value === 'string' ? value : String(value);
    }
    return this;
  }

  toJSON(): MessageBody {
    return this.body;
  }
}
brand(Message, 'Message');

/** A command (fire-and-forget): `parameters` may be any JSON value, as in Python. */
export class MessageCommand extends Message {
  constructor(command: string, parameters: unknown = {}) {
    super();
    this.body.type = 'command';
    this.body.name = String(command);
    this.body.content['parameters'] = parameters;
  }

  get parameters(): unknown {
    return this.body.content['parameters'];
  }
}
brand(MessageCommand, 'MessageCommand');

/** A command that expects an answer. */
export class RpcCommand extends MessageCommand {
  constructor(command: string, parameters: unknown = {}) {
    super(command, parameters);
    this.body.category = 'rpc';
  }
}
brand(RpcCommand, 'RpcCommand');

/** The status of a component; the status string is the message name. */
export class MessageStatus extends Message {
  constructor(status: string) {
    super();
    this.body.type = 'status';
    this.body.name = String(status);
  }
}
brand(MessageStatus, 'MessageStatus');

/** The kinds of result (Python's `result_type`). */
export type ResultType = 'success' | 'error' | 'exception';

/** The successful result of an RPC: `content = {type: 'success', value, message}`. */
export class MessageResult<T = unknown> extends Message {
  constructor(value: T, message = '') {
    super();
    this.body.type = 'result';
    this.body.content['type'] = 'success';
    this.body.content['value'] = value;
    this.body.content['message'] = message;
  }

  get resultType(): ResultType {
    return this.body.content['type'] as ResultType;
  }

  get value(): T {
    return this.body.content['value'] as T;
  }

  get message(): string {
    return String(this.body.content['message'] ?? '');
  }

  override get ok(): boolean {
    return this.resultType === 'success';
  }

  /**
   * A stable, machine-readable code of a failure (`_reserved.code`, e.g.
   * `POSTAGE_ERR_UNKNOWN_COMMAND`), when the responder gave one; Python peers give none.
   */
  get code(): string | undefined {
    const code = this.body._reserved['code'];
    return typeof code === 'string' ? code : undefined;
  }

  /** The value of a success; an error or exception result is thrown as an `Error` named after the remote one. */
  unwrap(): T {
    if (!this.ok) throw resultToError(this);
    return this.value;
  }
}
brand(MessageResult, 'MessageResult');

/** A foreseen failure of an RPC: value `null`; falsy (`ok === false`). `code` goes in `_reserved`, where Python peers ignore it. */
export class MessageResultError extends MessageResult<null> {
  constructor(message: string, code?: string) {
    super(null, message);
    this.body.content['type'] = 'error';
    if (code !== undefined) this.body._reserved['code'] = code;
  }
}
brand(MessageResultError, 'MessageResultError');

/** An exception raised by the remote handler: value is the exception's class name; falsy. */
export class MessageResultException extends MessageResult<string> {
  constructor(name: string, message: string) {
    super(name, message);
    this.body.content['type'] = 'exception';
  }

  /** The remote exception's class name (e.g. `ZeroDivisionError`, `TimeoutError`). */
  get errorName(): string {
    return this.value;
  }
}
brand(MessageResultException, 'MessageResultException');

/** Maps a thrown value to the exception result that carries it across the wire. */
export function errorToResult(error: unknown): MessageResultException {
  if (error instanceof Error) return new MessageResultException(error.name || 'Error', error.message);
  return new MessageResultException('Error', String(error));
}

/** Maps an error or exception result back to a throwable `Error` whose name is the remote one. */
export function resultToError(result: MessageResult<unknown>): Error {
  const err = new Error(result.message);
  err.name = result.resultType === 'exception' ? String(result.value) : 'MessageResultError';
  return err;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Checks that a decoded value has the shape of a Postage body and returns it typed.
 * Throws `POSTAGE_ERR_DECODE` naming the first field that is missing or of the wrong type.
 */
export function validateBody(value: unknown): MessageBody {
  if (!isRecord(value)) throw decodeError('body', value, 'is not a JSON object');
  for (const field of ['type', 'name', 'category'] as const) {
    if (typeof value[field] !== 'string') throw decodeError(field, value[field], 'must be a string');
  }
  if (!isRecord(value['content'])) throw decodeError('content', value['content'], 'must be an object');
  if (value['fingerprint'] !== undefined && !isRecord(value['fingerprint'])) {
    throw decodeError('fingerprint', value['fingerprint'], 'must be an object');
  }
  if (value['_reserved'] !== undefined && !isRecord(value['_reserved'])) {
    throw decodeError('_reserved', value['_reserved'], 'must be an object');
  }
  const body = value as Partial<MessageBody> & Pick<MessageBody, 'type' | 'name' | 'category' | 'content'>;
  return {
    type: body.type,
    name: body.name,
    category: body.category,
    version: typeof body.version === 'string' ? body.version : '2',
    fingerprint: (body.fingerprint ?? {}) as MessageBody['fingerprint'],
    content: body.content,
    _reserved: body._reserved ?? {},
  };
}

function decodeError(field: string, value: unknown, why: string): PostageError {
  return new PostageError('POSTAGE_ERR_DECODE', `malformed message: ${field} ${why}`, { key: field, value: typeof value });
}

/** Rebuilds the right message class from a decoded body (throws `POSTAGE_ERR_DECODE` if malformed). */
export function messageFromBody(raw: unknown): Message {
  const body = validateBody(raw);
  let message: Message;
  if (body.type === 'result') {
    message = resultFromBody(body);
  } else if (body.type === 'command') {
    const Cls = body.category === 'rpc' ? RpcCommand : MessageCommand;
    message = new Cls(body.name, body.content['parameters']);
  } else if (body.type === 'status') {
    message = new MessageStatus(body.name);
  } else {
    message = new Message();
  }
  Object.assign(message.body, body);
  return message;
}

/**
 * Reads a reply as a result, as Python's `consume_rpc` did: an unknown or missing
 * result type becomes a `MessageResultError('Malformed reply …')` instead of throwing.
 */
export function resultFromBody(raw: unknown): MessageResult {
  const content = isRecord(raw) && isRecord(raw['content']) ? raw['content'] : undefined;
  let result: MessageResult;
  switch (content?.['type']) {
    case 'success':
      result = new MessageResult(content['value'], String(content['message'] ?? ''));
      break;
    case 'error':
      result = new MessageResultError(String(content['message'] ?? ''));
      break;
    case 'exception':
      result = new MessageResultException(String(content['value']), String(content['message'] ?? ''));
      break;
    default:
      return new MessageResultError(`Malformed reply ${JSON.stringify(content ?? raw) ?? String(raw)}`);
  }
  if (isRecord(raw) && isRecord(raw['fingerprint'])) result.setFingerprint(raw['fingerprint'] as Partial<FingerprintDict>);
  if (isRecord(raw) && isRecord(raw['_reserved'])) Object.assign(result.body._reserved, raw['_reserved']);
  return result;
}
