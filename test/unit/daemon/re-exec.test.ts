import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath, pathToFileURL } from 'node:url';
import test from 'ava';
import { execScript, shellQuote } from '../../../daemon/re-exec.js';

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const NASTY = ['a b', '', "it's", 'd"q', '$HOME', '`id`', '*', '\\', 'new\nline', 'é😀', '--flag=x y', "''"];

test('shellQuote: /bin/sh gives back every argument exactly', (t) => {
  const script = `printf '%s\\0' ${NASTY.map(shellQuote).join(' ')}`;
  const out = spawnSync('/bin/sh', ['-c', script], { encoding: 'utf8' });
  t.deepEqual(out.stdout.split('\0').slice(0, -1), NASTY);
});

test('execScript execs the command itself', (t) => {
  t.is(execScript(['/usr/bin/node', 'x y']), "exec '/usr/bin/node' 'x y'");
});

test('reExec keeps the PID and the arguments over 5 generations (the mechanism on this runtime)', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postaged-reexec-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const script = path.join(dir, 'gen.mjs');
  const reExecUrl = pathToFileURL(path.join(root, 'dist', 'daemon', 're-exec.js')).href;
  fs.writeFileSync(
    script,
    `import { reExec, execMechanism } from ${JSON.stringify(reExecUrl)};
const gen = Number(process.env.GEN ?? 0);
process.stdout.write(JSON.stringify({ gen, pid: process.pid, argv: process.argv.slice(2), execArgv: process.execArgv, mechanism: execMechanism() }) + '\\n');
if (gen < 5) { process.env.GEN = String(gen + 1); reExec(); }
`,
  );
  const { stdout } = await run(process.execPath, ['--no-warnings', script, ...NASTY], { env: { ...process.env, GEN: '0' }, cwd: dir });
  const generations = stdout.trim().split('\n').map((l) => JSON.parse(l) as { gen: number; pid: number; argv: string[]; execArgv: string[]; mechanism: string });
  t.is(generations.length, 6);
  t.log(`mechanism: ${generations[0]!.mechanism}`);
  for (const g of generations) {
    t.is(g.pid, generations[0]!.pid, `generation ${g.gen}: same PID`);
    t.deepEqual(g.argv, NASTY, `generation ${g.gen}: same arguments`);
    t.deepEqual(g.execArgv, ['--no-warnings'], `generation ${g.gen}: same node flags`);
  }
});
