// This host's interface addresses as the kernel holds them (`ip -j addr show`), whatever an interface's
// carrier: libuv's os.networkInterfaces() leaves out interfaces that are not RUNNING, and docker0 has
// no carrier until a container is attached, so it looked absent on every freshly installed Docker host.
// Plus a cheap fingerprint of the address lists in /proc, so a watcher can poll often without spawning.
import { readFile } from 'node:fs/promises'
import { run } from '../enforce/exec.js'
import { formatIp, parseIp } from '../policy/net.js'

export interface IfAddress {
  family: 4 | 6
  /** Canonical text (formatIp), no zone index. */
  address: string
  prefixlen: number
}

export interface Link {
  name: string
  index: number
  addresses: IfAddress[]
}

/** The links and addresses of `ip -j addr show` output. Malformed items are skipped, never thrown on. */
export function parseIpAddrJson(text: string): Link[] {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch {
    return []
  }
  if (!Array.isArray(raw)) return []
  const out: Link[] = []
  for (const l of raw as Array<Record<string, unknown>>) {
    if (!l || typeof l.ifname !== 'string' || typeof l.ifindex !== 'number') continue
    const addresses: IfAddress[] = []
    for (const a of Array.isArray(l.addr_info) ? (l.addr_info as Array<Record<string, unknown>>) : []) {
      if (!a || typeof a.local !== 'string' || (a.family !== 'inet' && a.family !== 'inet6')) continue
      const ip = parseIp(a.local)
      if (!ip) continue
      addresses.push({ family: a.family === 'inet' ? 4 : 6, address: formatIp(ip), prefixlen: typeof a.prefixlen === 'number' ? a.prefixlen : a.family === 'inet' ? 32 : 128 })
    }
    out.push({ name: l.ifname, index: l.ifindex, addresses })
  }
  return out
}

/** The first IPv4 address of interface `name`, undefined when it is absent or has none. */
export function interfaceIPv4(links: readonly Link[], name: string): string | undefined {
  return links.find((l) => l.name === name)?.addresses.find((a) => a.family === 4)?.address
}

/** Every address of every interface of this host (this network namespace), each once. */
export function ownAddresses(links: readonly Link[]): string[] {
  return [...new Set(links.flatMap((l) => l.addresses.map((a) => a.address)))]
}

/** Read the kernel's address list (through exec.ts: `ip` is the only reader of netlink we have). */
export async function readLinks(runner: typeof run = run): Promise<Link[]> {
  const r = await runner('ip', ['-j', 'addr', 'show'], { timeoutMs: 10_000 })
  return parseIpAddrJson(r.stdout)
}

/**
 * Changes whenever an address is added or removed anywhere: the IPv4 local table (/proc/net/fib_trie
 * lists every local address) and the IPv6 address list (/proc/net/if_inet6). Two small file reads, so
 * it can be polled every couple of seconds where spawning `ip` (~10 ms of CPU, a stall of the event
 * loop the DNS answers run on) could not. Unreadable files give undefined: then poll `ip` itself.
 * fib_trie holds the routes too: a few KB on a Docker host, megabytes only with a full Internet table.
 */
export async function addressFingerprint(read: (path: string) => Promise<string> = (p) => readFile(p, 'utf8')): Promise<string | undefined> {
  try {
    const [v4, v6] = await Promise.all([read('/proc/net/fib_trie'), read('/proc/net/if_inet6').catch(() => '')])
    return `${v4}\n--\n${v6}`
  } catch {
    return undefined
  }
}
