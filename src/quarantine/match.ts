// Which running containers a quarantine applies to. Pure: the agent asks it for every container it
// follows (src/docker/ records) whenever the policy or a container changes. A quarantine names its
// container the way a responder has it at hand (a name from `hits`, an id from `docker ps`, a compose
// service), so a text is tried all three ways and every container that matches any of them is
// quarantined: an ambiguous text quarantines more, never less (fail closed), and `quarantine ls`
// shows every container each quarantine matched, so an over-broad one is visible at once.
import type { ContainerRecord } from '../docker/types.js'
import type { Quarantine } from './types.js'

/**
 * The shortest id prefix that matches by id: the 12 hex digits `docker ps` prints. Shorter hex texts
 * are still tried as names and services; a 4-digit prefix would match one container in 65,536 on
 * every host of the fleet, which is too likely to cut off the wrong one.
 */
export const MIN_ID_PREFIX = 12

/** What `container` may be: Docker's name rule (an optional leading `/`), which also covers ids and compose services. */
export const CONTAINER_TEXT = /^\/?[A-Za-z0-9][A-Za-z0-9_.-]*$/
export const MAX_CONTAINER_TEXT = 256

export function isContainerText(s: string): boolean {
  return s.length >= 1 && s.length <= MAX_CONTAINER_TEXT && CONTAINER_TEXT.test(s)
}

/** The text without a leading `/` (Docker's API names containers `/web`; people write `web`). */
export function containerKey(text: string): string {
  return text.startsWith('/') ? text.slice(1) : text
}

/** Does `text` name this container: its name, its compose service, or a prefix of its id (>= 12 hex digits)? */
export function containerMatches(text: string, c: Pick<ContainerRecord, 'id' | 'name' | 'service'>): boolean {
  const key = containerKey(text)
  if (key === '') return false
  if (c.name === key || containerKey(c.name) === key) return true
  if (c.service !== undefined && c.service === key) return true
  const hex = key.toLowerCase()
  return hex.length >= MIN_ID_PREFIX && /^[0-9a-f]+$/.test(hex) && c.id.toLowerCase().startsWith(hex)
}

/** Host names compare without regard to case (DNS names; the agent's `--host`). */
export function sameHost(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase()
}

/** Is the quarantine still in force at `now` (it applies up to and including its expiry instant)? */
export function quarantineActive(q: Pick<Quarantine, 'expires'>, now: Date): boolean {
  if (q.expires === undefined) return true
  const ms = Date.parse(q.expires)
  return Number.isNaN(ms) || now.getTime() <= ms
}

/**
 * Does quarantine `q` apply to container `record` on host `host`? Expiry is not checked here: the
 * policy carries only quarantines in force (the server rebuilds it at each expiry instant).
 */
export function quarantineMatches(q: Pick<Quarantine, 'container' | 'host'>, record: Pick<ContainerRecord, 'id' | 'name' | 'service'>, host: string): boolean {
  if (q.host !== undefined && !sameHost(q.host, host)) return false
  return containerMatches(q.container, record)
}

/**
 * The quarantine that holds `record` on `host`, if any: the earliest added one when several match (a
 * stable choice, so the reported quarantineId does not flap between equal candidates).
 */
export function quarantineFor(quarantines: readonly Quarantine[] | undefined, record: Pick<ContainerRecord, 'id' | 'name' | 'service'>, host: string): Quarantine | undefined {
  let best: Quarantine | undefined
  for (const q of quarantines ?? []) {
    if (!quarantineMatches(q, record, host)) continue
    if (!best || q.added < best.added || (q.added === best.added && q.id < best.id)) best = q
  }
  return best
}
