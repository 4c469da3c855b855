/**
 * The routing keys `postage` accepts (SPEC §3, docs/addressing.md) and how many replies a
 * key can bring: a round-robin or instance key reaches one consumer, so an RPC to it
 * returns at the first reply; a fan-out key may reach any number, so replies are
 * collected until the timeout (or `--expect`).
 */
import { DAEMON_DISCOVERY_KEY, parseKey } from 'postage';
import { usageError } from './exit-codes.js';

/** `fanout`: many may answer; `single`: one consumer (round robin or one instance). */
export type KeyReach = 'fanout' | 'single';

export const KEY_FORMS_HELP = `Keys (N application, H host, P process id, G group):
  N        every N             N/rr     one N, round robin
  @H       everything on H     N@H      every N on H        N@H/rr  one N on H
  P@H      the whole daemon    N:P@H    exactly one instance
  N#G      every N in group G  N#G/rr   one N of group G
  ${DAEMON_DISCOVERY_KEY.padEnd(8)} every postaged daemon (the default of ping and status)`;

/** Checks a key against the library's grammar (parseKey); a bad key is a usage error (exit 2). */
export function checkKey(key: string): KeyReach {
  if (Buffer.byteLength(key) > 255) throw usageError(`key is longer than 255 bytes (AMQP's limit): ${key.slice(0, 40)}…`);
  const parsed = parseKey(key);
  if (!parsed) throw usageError(`not a Postage key: ${JSON.stringify(key)}\n${KEY_FORMS_HELP}`);
  return parsed.reach;
}
