/**
 * podman for the deployment tests (test/deploy/): the host packages and the local base image
 * are made by scripts/deploy/ when missing (under CI a missing prerequisite must fail, never
 * skip, so nothing here skips); every container is labelled, so a crashed run's leftovers are
 * removed by the next one; every command's duration can be logged.
 */
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { check, run, type RunResult } from './run.js';
import { ROOT } from './spawn.js';

export const CONTAINERS_CONF = path.join(ROOT, 'scripts', 'deploy', 'containers.conf');
/** Label on every container a test starts. */
export const LABEL = 'postage-ci=deploy';
/** And the PID of the test process that started it: leftovers are removed only once it is gone. */
const OWNER_LABEL = 'postage-ci-owner';

/** podman with the project's containers.conf; its harmless "no systemd" healthcheck-timer noise dropped. */
export async function podman(...args: string[]): Promise<RunResult> {
  const r = await run('podman', args, { env: { CONTAINERS_CONF } });
  r.stderr = r.stderr
    .split('\n')
    .filter((l) => !/unable to get systemd connection/.test(l))
    .join('\n');
  return r;
}

export async function podmanOk(...args: string[]): Promise<RunResult> {
  const r = await podman(...args);
  if (r.code !== 0) throw new Error(`podman ${args.join(' ')} exited ${r.code}\n${r.stderr.slice(-4000)}`);
  return r;
}

/**
 * podman and the Dockerfile's base image, made if missing (scripts/deploy/). Logs how long each
 * took: the base image comes from the cache archive (seconds) or from debootstrap (a minute).
 */
export async function preparePodman(t: ExecutionContext): Promise<string> {
  const setup = await check('bash', [path.join(ROOT, 'scripts', 'deploy', 'host-setup.sh')]);
  t.log(`host packages: ${setup.stdout.trim()} (${(setup.ms / 1000).toFixed(1)} s)`);
  const base = await check('bash', [path.join(ROOT, 'scripts', 'deploy', 'node-base-image.sh')]);
  const tag = base.stdout.trim().split('\n').at(-1)!;
  t.log(`base image ${tag}: ${(base.ms / 1000).toFixed(1)} s`);
  await removeLeftovers();
  // Each build of changed sources leaves untagged images behind (the previous build stage, ~0.8 GB):
  // drop those a day old, keeping the recent ones that the layer cache of the next build uses.
  await podman('image', 'prune', '-f', '--filter', 'until=24h');
  return tag;
}

/**
 * Removes the containers a crashed earlier run left (they carry LABEL, and the PID of a test
 * process that no longer runs: another test's live containers are left alone).
 */
export async function removeLeftovers(): Promise<void> {
  const rows = (await podmanOk('ps', '-a', '--filter', `label=${LABEL}`, '--format', `{{.ID}} {{index .Labels "${OWNER_LABEL}"}}`)).stdout.split('\n').filter(Boolean);
  const dead = rows
    .map((r) => r.split(' '))
    .filter(([, owner]) => {
      const pid = Number(owner);
      if (!Number.isInteger(pid) || pid <= 0) return true;
      try {
        process.kill(pid, 0);
        return false;
      } catch (err) {
        return (err as NodeJS.ErrnoException).code !== 'EPERM';
      }
    })
    .map(([id]) => id!);
  if (dead.length > 0) await podman('rm', '-f', '-t', '0', ...dead);
}

/** `podman run -d` with the label; the container is removed at teardown. */
export async function runContainer(t: ExecutionContext, name: string, args: readonly string[]): Promise<string> {
  await podman('rm', '-f', '-t', '0', name);
  t.teardown(async () => {
    await podman('rm', '-f', '-t', '0', name);
  });
  const r = await podmanOk('run', '-d', '--name', name, '--label', LABEL, '--label', `${OWNER_LABEL}=${process.pid}`, ...args);
  return r.stdout.trim();
}

/** One field of `podman inspect` (a Go template). */
export async function inspect(name: string, format: string): Promise<string> {
  return (await podmanOk('inspect', name, '--format', format)).stdout.trim();
}
