// The text form of where the sinkhole serves: `ADDR[:PORT]`, `[V6]:PORT`, or `IFACE[:PORT]` for an
// interface's IPv4 address (`docker0:53`), which the sinkhole binds when it appears and follows when
// it changes. One parser for the agent's --sinkhole-listen and the sinkhole command's --listen.
import { isIP } from 'node:net'
import { errors } from '../errors.js'
import { formatIp, parseIp } from '../policy/net.js'
import type { ListenAddress } from './server.js'

/**
 * Where to serve: an address, or an interface's first IPv4 address (`docker0`), bound when it has one
 * and rebound when it changes; meanwhile the sinkhole answers on 127.0.0.1 at the same port.
 */
export type ListenSpec = ListenAddress | { interface: string; port: number }

/** The loopback address an interface listen falls back to while its interface has no address. */
export const FALLBACK_ADDRESS = '127.0.0.1'

/** Linux interface names: up to 15 bytes (IFNAMSIZ - 1); no ':' (that would be an alias label) or '/'. */
const IFACE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/

export function parseListenSpec(text: string, defPort: number, what: string): ListenSpec {
  const v = text.trim()
  let host = v
  let port = defPort
  const br = /^\[([^\]]+)\](?::(\d+))?$/.exec(v)
  if (br) {
    host = br[1]!
    if (br[2] !== undefined) port = Number(br[2])
  } else if (isIP(v) === 0) {
    const m = /^(.*):(\d+)$/.exec(v)
    if (m) {
      host = m[1]!
      port = Number(m[2])
    }
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw errors.config(`--${what} ${JSON.stringify(text)}: port must be 0..65535`)
  const ip = parseIp(host)
  if (ip) return { address: formatIp(ip), port }
  // All digits and dots is a mistyped address, and `localhost` a host name: never an interface someone means.
  if (!br && IFACE.test(host) && !/^[\d.]+$/.test(host) && host.toLowerCase() !== 'localhost') return { interface: host, port }
  throw errors.config(`--${what} ${JSON.stringify(text)}: expected ADDR[:PORT] with an IP address, or IFACE[:PORT] (e.g. docker0:53)`)
}

/** How a listen is written back (progress lines, the upstream loop check). */
export function formatListenSpec(l: ListenSpec): string {
  if ('interface' in l) return `${l.interface}:${l.port}`
  return l.address.includes(':') ? `[${l.address}]:${l.port}` : `${l.address}:${l.port}`
}
