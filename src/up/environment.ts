// Where `up` forwards: the DNS upstreams (the host's resolv.conf nameservers), and the Docker bridge
// gateways the agent protects (its control plane, see src/enforce/control-plane.ts). Pure parsers plus
// small readers. (docker0's address for the sinkhole comes from the kernel's list: src/sinkhole/interfaces.ts.)
import { readFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { run } from '../enforce/exec.js'

/** The host's own addresses on bridge interfaces, from `ip -j addr show type bridge` (link-local skipped). */
export function parseBridgeAddresses(json: string): string[] {
  let links: unknown
  try {
    links = JSON.parse(json)
  } catch {
    return []
  }
  const out: string[] = []
  for (const l of Array.isArray(links) ? links : []) {
    for (const a of ((l as { addr_info?: unknown[] }).addr_info ?? []) as Array<{ local?: unknown; scope?: unknown }>) {
      if (typeof a.local === 'string' && a.scope !== 'link' && isIP(a.local) !== 0 && !out.includes(a.local)) out.push(a.local)
    }
  }
  return out
}

/**
 * Docker's bridge gateways (docker0 and user-defined bridges: the host's own address on each). Read
 * with `ip`, not os.networkInterfaces(): docker0 without a running container has no carrier and Node
 * does not list it. Best effort: no `ip`, no bridges, an empty list.
 */
export async function readBridgeGateways(netns?: string): Promise<string[]> {
  try {
    const r = await run('ip', ['-j', 'addr', 'show', 'type', 'bridge'], { ...(netns ? { netns } : {}), reject: false, timeoutMs: 5000 })
    return r.exitCode === 0 ? parseBridgeAddresses(r.stdout) : []
  } catch {
    return []
  }
}

/**
 * `nameserver` lines of a resolv.conf (resolv.conf(5): at most 3 are used by libc; we keep them all).
 * Scoped IPv6 addresses (`fe80::1%eth0`) are skipped: the DNS client cannot use a zone index.
 */
export function parseResolvConf(text: string): string[] {
  const out: string[] = []
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line)
    if (m && !m[1]!.includes('%') && isIP(m[1]!) !== 0 && !out.includes(m[1]!)) out.push(m[1]!)
  }
  return out
}

/**
 * The upstreams the sinkhole forwards to and blocked names are resolved at. The sinkhole's own
 * address is dropped: forwarding to ourselves would loop (e.g. resolv.conf already points at us).
 */
export async function defaultUpstreams(sinkhole: { address: string; port: number }, path = '/etc/resolv.conf'): Promise<string[]> {
  const text = await readFile(path, 'utf8').catch(() => '')
  return parseResolvConf(text).filter((ns) => !(ns === sinkhole.address && sinkhole.port === 53))
}
