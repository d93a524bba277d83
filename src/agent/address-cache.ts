// The agent's resolved-address cache: what each blocked name resolved to, with expiry and grace times,
// so that an agent restarted while the upstream DNS is down still blocks those addresses (the kernel
// would otherwise be rewritten without them). Written atomically with a checksum. Unlike the policy
// cache, a corrupt file never stops start-up: it is moved aside and reported, the names are resolved
// again, and the policy (explicit networks, hosts block, sinkhole) is enforced meanwhile.
import { createHash } from 'node:crypto'
import { readFile, readdir, rename, rm } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { isIP } from 'node:net'
import type { Logger } from '../log.js'
import type { AddressSnapshot, AddressStore, DomainRecord } from '../resolve/address-book.js'
import { writeFileAtomic } from './atomic-write.js'

/** Bump when the layout changes; an unknown format is treated as corrupt (never guessed at). */
export const ADDRESS_CACHE_FORMAT = 1
export const ADDRESS_CACHE_FILE = 'resolved-addresses.json'

interface FileBody {
  format: number
  /** sha256 (hex) of JSON.stringify(domains): catches truncation and hand edits. */
  checksum: string
  savedAt: string
  domains: Record<string, DomainRecord>
}

const checksum = (domains: Record<string, DomainRecord>): string => createHash('sha256').update(JSON.stringify(domains)).digest('hex')

/** Names as the policy stores them (lower case, punycode, no `*`): anything else is not ours. */
const NAME_RE = /^[a-z0-9_-][a-z0-9_.-]{0,252}$/

export function encodeAddressCache(s: AddressSnapshot, now = new Date()): string {
  const body: FileBody = { format: ADDRESS_CACHE_FORMAT, checksum: checksum(s.domains), savedAt: now.toISOString(), domains: s.domains }
  return JSON.stringify(body) + '\n'
}

/** Parse and verify the file's text: the snapshot, or why it cannot be used. Every field is checked. */
export function decodeAddressCache(text: string): { snapshot: AddressSnapshot } | { problem: string } {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (e) {
    return { problem: `not JSON (${(e as Error).message})` }
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return { problem: 'not an object' }
  const f = raw as Partial<FileBody>
  if (f.format !== ADDRESS_CACHE_FORMAT) return { problem: `unknown format ${JSON.stringify(f.format)} (expected ${ADDRESS_CACHE_FORMAT})` }
  if (f.domains === null || typeof f.domains !== 'object' || Array.isArray(f.domains)) return { problem: '"domains" is not an object' }
  const ip = (v: unknown): boolean => typeof v === 'string' && isIP(v) !== 0
  const time = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v) && v >= 0
  for (const [name, r] of Object.entries(f.domains as Record<string, unknown>)) {
    const bad = (why: string) => ({ problem: `${JSON.stringify(name.slice(0, 80))}: ${why}` })
    if (!NAME_RE.test(name)) return bad('not a domain name')
    if (r === null || typeof r !== 'object') return bad('not an object')
    const d = r as Partial<DomainRecord>
    if (!Array.isArray(d.answers) || !d.answers.every((a) => Array.isArray(a) && a.every(ip))) return bad('"answers" must be lists of IP addresses')
    if (!Array.isArray(d.gone) || !d.gone.every((g) => Array.isArray(g) && g.length === 2 && ip(g[0]) && time(g[1]))) return bad('"gone" must be [IP, time] pairs')
    if (!time(d.expiresAt)) return bad('"expiresAt" must be a time in ms')
  }
  if (checksum(f.domains) !== f.checksum) return { problem: 'checksum mismatch (truncated or edited)' }
  return { snapshot: { domains: f.domains } }
}

export function createAddressCache(opts: { dir: string; log: Logger }): AddressStore {
  const file = join(opts.dir, ADDRESS_CACHE_FILE)
  const log = opts.log.child({ component: 'address-cache' })

  /** Temp files left by a write that a crash interrupted: never read, removed at start. */
  async function dropStaleTemps(): Promise<void> {
    let names: string[]
    try {
      names = await readdir(dirname(file))
    } catch {
      return
    }
    const prefix = `${basename(file)}.tmp-`
    for (const n of names) if (n.startsWith(prefix)) await rm(join(dirname(file), n), { force: true })
  }

  return {
    file,
    async read() {
      await dropStaleTemps()
      let text: string
      try {
        text = await readFile(file, 'utf8')
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
        return { problem: `cannot read: ${(e as Error).message}` }
      }
      const r = decodeAddressCache(text)
      if ('snapshot' in r) return r
      // Kept for a human to look at (one copy: the newest), out of the way of the next write.
      const aside = `${file}.corrupt`
      try {
        await rename(file, aside)
      } catch (e) {
        log.warn({ file, err: (e as Error).message }, 'could not move the corrupt resolved-address cache aside')
        return { problem: r.problem }
      }
      return { problem: r.problem, aside }
    },
    async write(s) {
      await writeFileAtomic(file, encodeAddressCache(s))
      log.debug({ domains: Object.keys(s.domains).length }, 'resolved addresses saved')
    },
  }
}
