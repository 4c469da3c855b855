/**
 * Whether the daemon does its job, for `GET /readyz`: it runs (not starting, restarting or
 * stopping), its broker connection is up, and every application that should consume does.
 * Applications stopped on purpose (disabled by configuration, or by `quit`) do not count;
 * a plugin that failed, is in quarantine, is starting, or is recovering its channel does.
 */
import type { AppStatus } from './host.js';

/** What `/readyz` answers. */
export interface Readiness {
  ready: boolean;
  /** Each thing that is not ready, said in a sentence (empty when ready). */
  reasons: string[];
  phase: string;
  broker: string;
  applications: Array<{ name: string; state: string; reason?: string }>;
}

/** Judges readiness from the daemon's phase, the connection state and the applications' states. */
export function readiness(phase: string, broker: string, applications: readonly AppStatus[]): Readiness {
  const reasons: string[] = [];
  if (phase !== 'running') reasons.push(`the daemon is ${phase}`);
  if (broker !== 'connected') reasons.push(`the broker connection is ${broker}`);
  for (const a of applications) {
    if (a.state === 'running' || a.state === 'stopped') continue;
    const why = a.error ?? a.reason;
    reasons.push(`application ${a.name} is ${a.state}${why ? `: ${why}` : ''}`);
  }
  return {
    ready: reasons.length === 0,
    reasons,
    phase,
    broker,
    applications: applications.map((a) => ({ name: a.name, state: a.state, ...((a.error ?? a.reason) !== undefined ? { reason: (a.error ?? a.reason) as string } : {}) })),
  };
}
