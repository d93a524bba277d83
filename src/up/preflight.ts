// What `up` needs before it touches the host, decided from `doctor`'s own checks (one list of checks,
// one set of fix lines): root or CAP_NET_ADMIN, and the tools of the chosen backend. Pure over the
// check results so the decision is unit-testable.
import type { CheckResult } from '../doctor/checks.js'

export interface Missing {
  what: string
  fix: string
}

/** The checks each backend cannot run without (names as `src/doctor/checks.ts` reports them). */
const NEEDS: Record<string, readonly string[]> = {
  iptables: ['privileges', 'tool iptables', 'tool ip6tables', 'tool ipset', 'ip_set kernel support'],
  nftables: ['privileges', 'tool nft', 'nf_tables kernel support'],
  'dry-run': [],
}

/** Everything missing for `backend`, each with how to fix it; empty when `up` can start. */
export function missingFor(backend: string, results: readonly CheckResult[]): Missing[] {
  const byName = new Map(results.map((r) => [r.name, r]))
  const out: Missing[] = []
  const privileged = byName.get('privileges')?.status === 'ok'
  for (const name of NEEDS[backend] ?? []) {
    const r = byName.get(name)
    if (!r) continue
    // Without privileges the kernel probes fail with EPERM: one "not root" line says it, not three.
    if (!privileged && name.endsWith('kernel support')) continue
    if (r.status === 'ok') continue
    // A skipped kernel check means its tool is missing, which is already listed.
    if (r.status === 'skip') continue
    out.push({ what: `${name}: ${r.detail}`, fix: r.fix ?? 'see egress-guard doctor' })
  }
  return out
}
