// What the server protects from block entries (see src/policy/protect-check.ts): its own interface
// addresses (agents reach it there, unless a proxy or NAT is in between: --protect covers that), the
// resolvers in its resolv.conf (usually the fleet's too) and every --protect network. Read once at start.
import { networkInterfaces } from 'node:os'
import { readFileSync } from 'node:fs'
import { parseResolvConf } from '../up/environment.js'
import { protectedNets, type ProtectedNet } from '../policy/protect-check.js'

type Ifaces = ReturnType<typeof networkInterfaces>

/** Pure: the list from interface data, resolv.conf text and --protect values (validated by the caller). */
export function serverProtected(ifaces: Ifaces, resolvConf: string, extra: readonly string[]): ProtectedNet[] {
  const list: Array<{ value: string; why: string }> = []
  for (const v of extra) list.push({ value: v, why: '--protect' })
  for (const addrs of Object.values(ifaces)) {
    // Loopback and link-local can never be blocked anyway (the parser refuses them).
    for (const a of addrs ?? []) if (!a.internal && !a.address.startsWith('fe80:')) list.push({ value: a.address, why: "this server's address" })
  }
  for (const ns of parseResolvConf(resolvConf)) list.push({ value: ns, why: "this server's resolver" })
  return protectedNets(list)
}

export function readServerProtected(extra: readonly string[], resolvConfPath = '/etc/resolv.conf'): ProtectedNet[] {
  let text = ''
  try {
    text = readFileSync(resolvConfPath, 'utf8')
  } catch {
    /* no resolv.conf: no resolvers to protect */
  }
  return serverProtected(networkInterfaces(), text, extra)
}
