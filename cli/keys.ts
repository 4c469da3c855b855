/**
 * The routing keys `postage` accepts (SPEC §3, docs/addressing.md) and how many replies a
 * key can bring: a round-robin or instance key reaches one consumer, so an RPC to it
 * returns at the first reply; a fan-out key may reach any number, so replies are
 * collected until the timeout (or `--expect`).
 */
import { DAEMON_DISCOVERY_KEY } from 'postage';
import { usageError } from './exit-codes.js';

/** `fanout`: many may answer; `single`: one consumer (round robin or one instance). */
export type KeyReach = 'fanout' | 'single';

const NAME = '[^@#/:\\s]+';
const FORMS: ReadonlyArray<[RegExp, KeyReach]> = [
  [new RegExp(`^${NAME}/rr$`), 'single'], // N/rr
  [new RegExp(`^${NAME}@${NAME}/rr$`), 'single'], // N@H/rr
  [new RegExp(`^${NAME}#${NAME}/rr$`), 'single'], // N#G/rr
  [new RegExp(`^${NAME}:${NAME}@${NAME}$`), 'single'], // N:P@H, one instance
  [new RegExp(`^${NAME}$`), 'fanout'], // N
  [new RegExp(`^@${NAME}$`), 'fanout'], // @H
  [new RegExp(`^${NAME}@${NAME}$`), 'fanout'], // N@H, and P@H (the whole daemon)
  [new RegExp(`^${NAME}#${NAME}$`), 'fanout'], // N#G
];

export const KEY_FORMS_HELP = `Keys (N application, H host, P process id, G group):
  N        every N             N/rr     one N, round robin
  @H       everything on H     N@H      every N on H        N@H/rr  one N on H
  P@H      the whole daemon    N:P@H    exactly one instance
  N#G      every N in group G  N#G/rr   one N of group G
  ${DAEMON_DISCOVERY_KEY.padEnd(8)} every postaged daemon (the default of ping and status)`;

/** Checks a key against the forms above; a bad key is a usage error (exit 2). */
export function checkKey(key: string): KeyReach {
  if (key === DAEMON_DISCOVERY_KEY) return 'fanout';
  if (Buffer.byteLength(key) > 255) throw usageError(`key is longer than 255 bytes (AMQP's limit): ${key.slice(0, 40)}…`);
  for (const [form, reach] of FORMS) if (form.test(key)) return reach;
  throw usageError(`not a Postage key: ${JSON.stringify(key)}\n${KEY_FORMS_HELP}`);
}
