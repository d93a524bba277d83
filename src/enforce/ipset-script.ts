// Pure text generation for the ipset side of the iptables backend: set names and sizes, parsing
// `ipset save` / `ipset list -t`, and the ONE `ipset -exist restore` script that moves a set from what
// the kernel holds to what the policy wants (incrementally for small changes, else build-beside + swap).

export type SetRole = 'block' | 'alert' | 'allow' | 'ctl'
export type SetKey = `${SetRole}${4 | 6}`
/** `ctl4`/`ctl6` hold the control-plane endpoints (DesiredState.exempt), checked before all others. */
export const SET_KEYS: readonly SetKey[] = ['ctl4', 'ctl6', 'allow4', 'allow6', 'block4', 'block6', 'alert4', 'alert6']

/**
 * The ipset type of a set. The exempt set is hash:ip,port: it matches the destination address, the
 * protocol AND the port, so exempting the server's 198.51.100.1 tcp/8787 leaves every other port of
 * that address (and the rest of a blocked 198.51.100.0/24) blocked. Policy sets are hash:net.
 */
export type SetType = 'hash:net' | 'hash:ip,port'
export function setType(key: SetKey): SetType {
  return key.startsWith('ctl') ? 'hash:ip,port' : 'hash:net'
}

/** ipset names are at most 31 characters (IPSET_MAXNAMELEN 32 with the NUL). */
export const SET_NAME_MAX = 31

/** Live set name for a role+family, e.g. `egress-guard-block4`. */
export function setName(prefix: string, key: SetKey): string {
  return `${prefix}-${key}`
}

/** The temporary set a new content is built in before it is swapped with the live one. */
export function tempSetName(prefix: string, key: SetKey): string {
  return `${prefix}-${key}-t`
}

/** All the set names a prefix owns (live and temporary): what `remove()` may destroy, nothing else. */
export function ownedSetNames(prefix: string): string[] {
  return SET_KEYS.flatMap((k) => [setName(prefix, k), tempSetName(prefix, k)])
}

function nextPow2(n: number): number {
  let p = 1
  while (p < n) p *= 2
  return p
}

/**
 * maxelem: a power of two at least twice the entry count and never below 65536, so a growing policy
 * never hits "set is full" between two rebuilds. hashsize: a starting bucket count near count/4 so a
 * bulk load does not trigger a cascade of kernel resizes (the kernel still grows it on demand).
 */
export function setSize(count: number): { maxelem: number; hashsize: number } {
  return { maxelem: nextPow2(Math.max(65536, 2 * count)), hashsize: nextPow2(Math.max(1024, Math.ceil(count / 4))) }
}

export interface SetHeader {
  name: string
  type: string
  family: 'inet' | 'inet6' | string
  hashsize: number
  maxelem: number
  /** Only from `ipset list -t`. */
  entries?: number
}

export interface LiveSet extends SetHeader {
  /** Canonical CIDRs (`198.51.100.7/32`, `2001:db8::1/128`); only from `ipset save`. */
  members?: string[]
}

/**
 * ipset prints a /32 or /128 member without the prefix and IPv6 via inet_ntop (RFC 5952 text), so
 * appending the host prefix gives the canonical form src/policy/net.ts produces. A hash:ip,port
 * member (`198.51.100.1,tcp:8787`) is already in DesiredState.exempt's form.
 */
export function canonicalMember(m: string, type = 'hash:net'): string {
  if (type !== 'hash:net' || m.includes('/')) return m
  return m.includes(':') ? `${m}/128` : `${m}/32`
}

function num(h: string, key: string): number {
  const m = new RegExp(`(?:^|\\s)${key} (\\d+)`).exec(h)
  return m ? Number(m[1]) : 0
}

/** Parse `ipset save` (or `ipset list -o save`) output, keeping only sets in `only` when given. */
export function parseIpsetSave(text: string, only?: ReadonlySet<string>): Map<string, LiveSet> {
  const out = new Map<string, LiveSet>()
  for (const line of text.split('\n')) {
    if (line.startsWith('add ')) {
      const sp = line.indexOf(' ', 4)
      const name = line.slice(4, sp)
      const set = out.get(name)
      if (!set) continue
      // Members may carry options (timeout, comment...) after the address; ours never do.
      const rest = line.slice(sp + 1)
      const sp2 = rest.indexOf(' ')
      set.members!.push(canonicalMember(sp2 < 0 ? rest : rest.slice(0, sp2), set.type))
    } else if (line.startsWith('create ')) {
      const parts = line.split(' ')
      const name = parts[1]!
      if (only && !only.has(name)) continue
      const fam = /family (\S+)/.exec(line)?.[1] ?? ''
      out.set(name, { name, type: parts[2] ?? '', family: fam, hashsize: num(line, 'hashsize'), maxelem: num(line, 'maxelem'), members: [] })
    }
  }
  return out
}

/** Parse `ipset list -t` (terse: headers and entry counts, no members). */
export function parseIpsetTerse(text: string): Map<string, SetHeader> {
  const out = new Map<string, SetHeader>()
  let cur: SetHeader | undefined
  for (const line of text.split('\n')) {
    if (line.startsWith('Name: ')) {
      cur = { name: line.slice(6).trim(), type: '', family: '', hashsize: 0, maxelem: 0 }
      out.set(cur.name, cur)
    } else if (!cur) continue
    else if (line.startsWith('Type: ')) cur.type = line.slice(6).trim()
    else if (line.startsWith('Header: ')) {
      cur.family = /family (\S+)/.exec(line)?.[1] ?? ''
      cur.hashsize = num(line, 'hashsize')
      cur.maxelem = num(line, 'maxelem')
    } else if (line.startsWith('Number of entries: ')) cur.entries = Number(line.slice(19).trim())
  }
  return out
}

export interface SetPlan {
  name: string
  mode: 'none' | 'create' | 'incremental' | 'swap'
  added: number
  removed: number
  /** Lines for `ipset -exist restore`; empty when nothing changes. */
  lines: string[]
  /** incremental only: the members added and deleted (to update a cached copy). */
  adds?: string[]
  dels?: string[]
}

/**
 * Lines that turn `live` (undefined: the set does not exist) into `desired`.
 * - missing: create at the right size and fill;
 * - a small change that fits the live maxelem: `del`/`add` on the live set (one-entry edits to a
 *   100,000-entry set must stay cheap);
 * - otherwise: build a temporary set sized for the new count, `swap` it with the live one (swap
 *   only needs the same type and family, so this is also how a set grows), destroy the temporary.
 * `liveMembers` must be the kernel's current members when the set exists.
 */
export function planSet(args: {
  name: string
  temp: string
  family: 4 | 6
  /** Default hash:net. */
  type?: SetType
  desired: readonly string[]
  live: SetHeader | undefined
  liveMembers: ReadonlySet<string> | undefined
  /** The list last written to the live set, in its order (see diffMembers); optional. */
  prevList?: readonly string[]
  tempExists: boolean
}): SetPlan {
  const { name, temp, desired, live, liveMembers } = args
  const fam = args.family === 4 ? 'inet' : 'inet6'
  const size = setSize(desired.length)
  const type = args.type ?? 'hash:net'
  const create = (n: string): string => `create ${n} ${type} family ${fam} hashsize ${size.hashsize} maxelem ${size.maxelem}`
  const lines: string[] = []
  if (args.tempExists) lines.push(`destroy ${temp}`) // left over by a crashed run: start clean
  if (!live) {
    lines.push(create(name))
    for (const m of desired) lines.push(`add ${name} ${m}`)
    return { name, mode: 'create', added: desired.length, removed: 0, lines }
  }
  const { adds, dels } = diffMembers(desired, liveMembers ?? new Set<string>(), args.prevList)
  const sameKind = live.type === type && live.family === fam
  if (adds.length === 0 && dels.length === 0 && sameKind) {
    return { name, mode: 'none', added: 0, removed: 0, lines }
  }
  const small = adds.length + dels.length <= Math.max(64, desired.length / 4)
  if (sameKind && small && live.maxelem >= size.maxelem) {
    // Deletions first so the live set never holds more than max(old, new) entries.
    for (const m of dels) lines.push(`del ${name} ${m}`)
    for (const m of adds) lines.push(`add ${name} ${m}`)
    return { name, mode: 'incremental', added: adds.length, removed: dels.length, lines, adds, dels }
  }
  lines.push(create(temp))
  for (const m of desired) lines.push(`add ${temp} ${m}`)
  lines.push(`swap ${temp} ${name}`, `destroy ${temp}`)
  return { name, mode: 'swap', added: adds.length, removed: dels.length, lines }
}

/**
 * Members to add and delete. Lookups go into the live Set only; building a 100,000-string Set of the
 * desired list costs more than the one-entry change it serves, so it is avoided:
 * - no deletions when |desired| - |adds| equals |live| (desired is de-duplicated: DesiredState contract);
 * - otherwise, when `prev` (the list last written, same members as the live Set) is given, one walk
 *   over `prev` and `desired` side by side finds the deletions, provided both lists keep their common
 *   members in the same relative order (the controller emits them sorted); when the walk does not
 *   consume `desired` completely the order differs and the Set-based diff runs instead.
 */
export function diffMembers(desired: readonly string[], have: ReadonlySet<string>, prev?: readonly string[]): { adds: string[]; dels: string[] } {
  const adds: string[] = []
  for (const m of desired) if (!have.has(m)) adds.push(m)
  const expectDels = have.size - (desired.length - adds.length)
  if (expectDels === 0) return { adds, dels: [] }
  if (prev && prev.length === have.size && expectDels > 0) {
    const added = new Set(adds)
    const dels: string[] = []
    let j = 0
    for (const p of prev) {
      while (j < desired.length && added.has(desired[j]!)) j++
      if (j < desired.length && desired[j] === p) j++
      else if (dels.push(p) > expectDels) break
    }
    while (j < desired.length && added.has(desired[j]!)) j++
    if (j === desired.length && dels.length === expectDels) return { adds, dels }
  }
  const want = new Set(desired)
  const dels: string[] = []
  for (const m of have) if (!want.has(m)) dels.push(m)
  return { adds, dels }
}
