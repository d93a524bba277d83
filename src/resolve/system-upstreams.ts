// The default upstream when none is configured: the `nameserver` lines of resolv.conf (RFC-less but
// long-standing format, see resolv.conf(5)). Pure: takes the file's text; the command reads the file.
import type { Upstream } from './dns-client.js'
import { parseIp, formatIp } from '../policy/net.js'

/**
 * `nameserver ADDR` lines, in order, port 53. resolv.conf(5) allows at most 3 (MAXNS); later ones are
 * ignored by libc and here too. IPv6 zone ids (`fe80::1%eth0`) are dropped: sockets here do not take them.
 */
export function nameserversFromResolvConf(text: string): Upstream[] {
  const out: Upstream[] = []
  for (const raw of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(raw)
    if (!m) continue
    const ip = parseIp(m[1]!)
    if (!ip) continue
    out.push({ address: formatIp(ip), port: 53 })
    if (out.length === 3) break
  }
  return out
}
