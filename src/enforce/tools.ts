// Which firewall binaries to spawn, chosen in ONE place: the iptables flavour (nf_tables or legacy)
// decides the names of iptables/ip6tables and their -save/-restore twins; ipset and nft never vary.
import { run } from './exec.js'

export type IptablesFlavour = 'nf_tables' | 'legacy'

export interface IptablesTools {
  flavour: IptablesFlavour | 'default'
  iptables: string
  ip6tables: string
  save4: string
  save6: string
  restore4: string
  restore6: string
}

/**
 * Binary names for a flavour. 'default' uses the plain names (Debian's alternatives pick the same
 * flavour Docker uses, which is what we want: our jumps must land in the tables Docker writes to).
 */
export function iptablesTools(flavour: IptablesFlavour | 'default' = 'default'): IptablesTools {
  const mid = flavour === 'legacy' ? '-legacy' : flavour === 'nf_tables' ? '-nft' : ''
  return {
    flavour,
    iptables: `iptables${mid}`,
    ip6tables: `ip6tables${mid}`,
    save4: `iptables${mid}-save`,
    save6: `ip6tables${mid}-save`,
    restore4: `iptables${mid}-restore`,
    restore6: `ip6tables${mid}-restore`,
  }
}

/** `iptables v1.8.9 (nf_tables)` -> 'nf_tables'; `iptables v1.8.9 (legacy)` or `v1.6.1` -> 'legacy'. */
export function parseIptablesVersion(text: string): { version: string; flavour: IptablesFlavour } | undefined {
  const m = /iptables(?:-\w+)? v(\d+(?:\.\d+)*)(?:\s+\(([\w_-]+)\))?/.exec(text)
  if (!m) return undefined
  return { version: m[1]!, flavour: m[2] === 'nf_tables' ? 'nf_tables' : 'legacy' }
}

/** Ask the default `iptables` which flavour it is. */
export async function detectIptablesFlavour(netns?: string): Promise<{ version: string; flavour: IptablesFlavour } | undefined> {
  const r = await run('iptables', ['--version'], { netns, reject: false, timeoutMs: 10_000 })
  return parseIptablesVersion(r.stdout + r.stderr)
}
