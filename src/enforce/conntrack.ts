// Quarantine's cut: delete the conntrack entries from and to one container address (package
// `conntrack`), so no established flow of it survives. The rules keep it cut afterwards: the
// quarantine rules come before the established/related accept.
import { errors } from '../errors.js'
import { run } from './exec.js'
import type { Family } from '../policy/net.js'

/** `conntrack v1.4.7 (conntrack-tools): 3 flow entries have been deleted.` -> 3 */
export function parseDeleted(stderr: string): number {
  const m = /(\d+) flow entr(?:y has|ies have) been deleted/.exec(stderr)
  return m ? Number(m[1]) : 0
}

/**
 * Delete every flow whose original source or destination is `ip` (a canonical address); returns how
 * many were deleted. conntrack exits 1 when nothing matched, which is not an error here.
 */
export async function cutFlows(ip: string, family: Family, netns?: string): Promise<number> {
  let n = 0
  for (const dir of ['-s', '-d'] as const) {
    const r = await run('conntrack', ['-D', '-f', family === 4 ? 'ipv4' : 'ipv6', dir, ip], { reject: false, ...(netns !== undefined ? { netns } : {}) })
    if (r.exitCode !== 0 && r.exitCode !== 1) throw errors.exec(`${r.command} exited ${r.exitCode}: ${r.stderr.trim().slice(0, 500)}`, r)
    n += parseDeleted(r.stderr)
  }
  return n
}
