// Where `up` forwards: the DNS upstreams (the host's resolv.conf nameservers). A pure parser plus a
// small reader. (docker0's address comes from the kernel's list: src/sinkhole/interfaces.ts.)
import { readFile } from 'node:fs/promises'
import { isIP } from 'node:net'

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
