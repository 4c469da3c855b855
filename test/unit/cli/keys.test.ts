/** Every key form of SPEC §3 is accepted with its reach; anything else is a usage error. */
import test from 'ava';
import { DAEMON_DISCOVERY_KEY } from 'postage';
import { CliError, ExitCode } from '../../../cli/exit-codes.js';
import { checkKey } from '../../../cli/keys.js';

test('fan-out keys', (t) => {
  for (const key of ['echo', '@web-1', 'echo@web-1', '4242@web-1', 'echo#blue', DAEMON_DISCOVERY_KEY]) t.is(checkKey(key), 'fanout', key);
});

test('keys that reach a single consumer', (t) => {
  for (const key of ['echo/rr', 'echo@web-1/rr', 'echo#blue/rr', 'echo:4242@web-1']) t.is(checkKey(key), 'single', key);
});

test('anything else is a usage error listing the forms', (t) => {
  for (const key of ['', 'a b', 'echo/r', 'echo@', '@', 'a@b@c', 'a:b', '#', 'x/rr/rr', 'a'.repeat(256)]) {
    const err = t.throws(() => checkKey(key), { instanceOf: CliError }, key);
    t.is(err?.exitCode, ExitCode.USAGE);
  }
});
