// Whether this host's Docker engine takes API calls over TCP, and how safely: an unauthenticated API on
// the network is root on the host for whoever reaches it (the Graboid worm spread through exactly that).
// Three sources: dockerd's command line, daemon.json's `hosts`, and the TCP sockets dockerd really
// listens on (/proc/net/tcp{,6} inodes matched to /proc/PID/fd), which also catches systemd socket
// activation (`-H fd://`). Pure judging over the facts; small /proc readers at the bottom.
import { readFile, readdir, readlink, stat } from 'node:fs/promises'
import { endianness } from 'node:os'
import { formatIp } from '../policy/net.js'
import type { DockerApiReport } from '../client/api-types.js'

/** What the agent reports (the fleet view's `dockerApi`) and `doctor` prints. */
export type DockerApiState = DockerApiReport
export type DockerApiVerdict = DockerApiReport['verdict']

/** Facts about one or more dockerd processes (and their daemon.json), gathered by inspectDockerd. */
export interface DockerdFacts {
  pids: number[]
  /** -H/--host values of the command lines and `hosts` of daemon.json, as written. */
  hosts: string[]
  /** TLS client verification on (--tlsverify, daemon.json tlsverify, or DOCKER_TLS_VERIFY). */
  tlsVerify: boolean
  /** dockerd's own listening TCP sockets; undefined when they could not be read (not root). */
  listening?: Array<{ address: string; port: number }>
  /** Ports of dockerd's listeners that are not the API (metrics-addr, swarm). */
  otherPorts: number[]
  /** daemon.json read, or why not (absent is not a problem). */
  config?: { path: string; error?: string }
}

export const FIXES: Record<Exclude<DockerApiVerdict, 'ok'>, string> = {
  fail:
    'remove the tcp:// listener (dockerd -H flag, "hosts" in daemon.json, or ListenStream= in docker.socket) and use the unix socket or ssh://; ' +
    'or require TLS client certificates (--tlsverify --tlscacert --tlscert --tlskey); or firewall the port to trusted addresses',
  warn: 'prefer the unix socket (or ssh://); keep TLS client certificates and their CA private, and firewall the port to trusted addresses',
}

/** Swarm's manager (2377, mutual TLS) and gossip (7946) ports are dockerd's but are not the Engine API. */
const SWARM_PORTS = [2377, 7946]

const fmt = (a: { address: string; port: number }): string => (a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`)

function isLoopback(address: string): boolean {
  return address === 'localhost' || /^127\./.test(address) || address === '::1'
}

/** A daemon `-H` value's TCP address (tcp://H:P, H:P, :P), undefined for unix://, fd://, npipe://. */
export function tcpHost(value: string, tls: boolean): { address: string; port: number } | undefined {
  let v = value.trim()
  const scheme = /^([a-z]+):\/\//i.exec(v)
  if (scheme) {
    if (scheme[1]!.toLowerCase() !== 'tcp') return undefined
    v = v.slice(scheme[0].length)
  } else if (!v.includes(':')) return undefined
  v = v.replace(/\/.*$/, '')
  const defPort = tls ? 2376 : 2375
  const br = /^\[([^\]]*)\](?::(\d*))?$/.exec(v)
  let host: string
  let port: string | undefined
  if (br) [host, port] = [br[1]!, br[2]]
  else {
    const i = v.lastIndexOf(':')
    ;[host, port] = i >= 0 ? [v.slice(0, i), v.slice(i + 1)] : [v, undefined]
  }
  // An empty host: recent dockerd takes localhost, older ones every address; judged as every address.
  return { address: host === '' ? '0.0.0.0' : host, port: port ? Number(port) : defPort }
}

/** The options of a dockerd command line that matter here (pflag syntax: -H X, -HX, -H=X, --host X, --host=X). */
export function parseDockerdArgs(argv: readonly string[]): { hosts: string[]; tlsVerify?: boolean; configFile?: string; metricsAddr?: string } {
  const out: { hosts: string[]; tlsVerify?: boolean; configFile?: string; metricsAddr?: string } = { hosts: [] }
  const bool = (v: string | undefined): boolean => v === undefined || v === 'true' || v === '1'
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!
    const long = /^--([a-z-]+)(?:=(.*))?$/s.exec(a)
    const takeValue = (inline: string | undefined): string | undefined => inline ?? argv[++i]
    if (long) {
      const [, name, inline] = long
      if (name === 'host') {
        const v = takeValue(inline)
        if (v !== undefined) out.hosts.push(v)
      } else if (name === 'tlsverify') out.tlsVerify = bool(inline)
      else if (name === 'config-file') out.configFile = takeValue(inline)
      else if (name === 'metrics-addr') out.metricsAddr = takeValue(inline)
    } else if (a.startsWith('-H')) {
      const rest = a.slice(2)
      const v = rest === '' ? argv[++i] : rest.replace(/^=/, '')
      if (v !== undefined) out.hosts.push(v)
    }
  }
  return out
}

/** daemon.json's `hosts`, `tlsverify` and `metrics-addr`; throws on JSON that is not an object. */
export function parseDaemonJson(text: string): { hosts: string[]; tlsVerify?: boolean; metricsAddr?: string } {
  const v: unknown = JSON.parse(text)
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object')
  const o = v as Record<string, unknown>
  const hosts = Array.isArray(o.hosts) ? o.hosts.filter((h): h is string => typeof h === 'string') : []
  return {
    hosts,
    ...(typeof o.tlsverify === 'boolean' ? { tlsVerify: o.tlsverify } : {}),
    ...(typeof o['metrics-addr'] === 'string' ? { metricsAddr: o['metrics-addr'] } : {}),
  }
}

/**
 * Listening TCP sockets of a /proc/net/tcp or tcp6 table, by socket inode. The kernel prints each
 * 32-bit word of the address as the native-endian integer it holds in network order.
 */
export function parseProcNetTcp(text: string, littleEndian = endianness() === 'LE'): Map<string, { address: string; port: number }> {
  const out = new Map<string, { address: string; port: number }>()
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f.length < 10 || f[3] !== '0A') continue // 0A: TCP_LISTEN
    const [hex, portHex] = f[1]!.split(':')
    if (!hex || !portHex || (hex.length !== 8 && hex.length !== 32)) continue
    const bytes = Buffer.from(hex, 'hex')
    if (littleEndian) for (let w = 0; w < bytes.length; w += 4) bytes.subarray(w, w + 4).reverse()
    // An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is shown as the IPv4 address it is.
    const mapped = bytes.length === 16 && bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff
    const address = bytes.length === 4 || mapped ? formatIp({ family: 4, bytes: bytes.subarray(bytes.length - 4) }) : formatIp({ family: 6, bytes })
    out.set(f[9]!, { address, port: parseInt(portHex, 16) })
  }
  return out
}

/** The verdict: fail on a non-loopback TCP listener without TLS client verification; warn on any other TCP; ok on unix only. */
export function judgeDockerApi(f: DockerdFacts): DockerApiState {
  const who = f.pids.length ? `dockerd (pid ${f.pids.join(', ')})` : 'dockerd (not running; from daemon.json)'
  let tcp: Array<{ address: string; port: number }>
  let source: string
  if (f.listening) {
    tcp = f.listening.filter((l) => !f.otherPorts.includes(l.port))
    source = 'listens'
  } else {
    tcp = f.hosts.map((h) => tcpHost(h, f.tlsVerify)).filter((x): x is { address: string; port: number } => x !== undefined)
    source = f.pids.length ? 'is configured to listen (its sockets could not be read: that needs root with CAP_SYS_PTRACE, as doctor under sudo has)' : 'would listen'
  }
  const listeners = [...new Set(tcp.map(fmt))]
  if (tcp.length === 0) {
    // Sockets handed over by systemd (-H fd://, docker.socket) are seen only in dockerd's fds.
    const unseen = !f.listening && f.hosts.some((h) => /^fd:\/\//.test(h)) ? ' as configured (the sockets systemd passes with -H fd:// were not readable: doctor as root checks them)' : ''
    return { verdict: 'ok', listeners, detail: `${who}: API on the unix socket only${unseen}` }
  }
  const exposed = tcp.filter((l) => !isLoopback(l.address))
  if (exposed.length && !f.tlsVerify) {
    return { verdict: 'fail', listeners, detail: `${who} ${source} on ${[...new Set(exposed.map(fmt))].join(', ')} without --tlsverify: whoever reaches it controls every container and is root on this host` }
  }
  if (f.tlsVerify) return { verdict: 'warn', listeners, detail: `${who} ${source} on ${listeners.join(', ')} with TLS client verification: whoever holds a client certificate of its CA is root on this host` }
  return { verdict: 'warn', listeners, detail: `${who} ${source} on ${listeners.join(', ')} (loopback) without TLS: every local user and process, and scripts in a local browser, can drive it` }
}

// ---- readers (/proc, daemon.json) ----

export interface InspectOptions {
  /** Judge the dockerd in this named network namespace (default: the one this process is in). */
  netns?: string
  /** daemon.json when dockerd's command line names none (default /etc/docker/daemon.json). */
  daemonJson?: string
  proc?: string
}

async function nsId(path: string): Promise<string | undefined> {
  try {
    const s = await stat(path)
    return `${s.dev}:${s.ino}`
  } catch {
    return undefined
  }
}

/** PIDs of dockerd processes whose network namespace is `nsPath`'s. */
export async function findDockerd(nsPath: string, proc = '/proc'): Promise<number[]> {
  const want = await nsId(nsPath)
  const out: number[] = []
  for (const p of await readdir(proc).catch(() => [] as string[])) {
    if (!/^\d+$/.test(p)) continue
    const comm = await readFile(`${proc}/${p}/comm`, 'utf8').catch(() => '')
    if (comm.trim() !== 'dockerd') continue
    if (want === undefined || (await nsId(`${proc}/${p}/ns/net`)) === want) out.push(Number(p))
  }
  return out
}

/** A process's listening TCP sockets (its own netns's tables, its own fds); undefined when unreadable. */
async function listeningSockets(pid: number, proc: string): Promise<Array<{ address: string; port: number }> | undefined> {
  let fds: string[]
  try {
    fds = await readdir(`${proc}/${pid}/fd`)
  } catch {
    return undefined
  }
  const inodes = new Set<string>()
  for (const fd of fds) {
    const l = await readlink(`${proc}/${pid}/fd/${fd}`).catch(() => '')
    const m = /^socket:\[(\d+)\]$/.exec(l)
    if (m) inodes.add(m[1]!)
  }
  const out: Array<{ address: string; port: number }> = []
  for (const table of ['tcp', 'tcp6']) {
    const text = await readFile(`${proc}/${pid}/net/${table}`, 'utf8').catch(() => '')
    for (const [inode, a] of parseProcNetTcp(text)) if (inodes.has(inode)) out.push(a)
  }
  return out
}

/** Gather the facts about the dockerd of this (or the named) network namespace; undefined when there is nothing to judge. */
export async function inspectDockerd(opts: InspectOptions = {}): Promise<DockerdFacts | undefined> {
  const proc = opts.proc ?? '/proc'
  if (opts.netns !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(opts.netns)) return undefined
  const nsPath = opts.netns ? `/var/run/netns/${opts.netns}` : `${proc}/self/ns/net`
  const pids = await findDockerd(nsPath, proc)
  const facts: DockerdFacts = { pids, hosts: [], tlsVerify: false, otherPorts: [...SWARM_PORTS] }
  let tlsFlag: boolean | undefined
  let tlsEnv = false
  let configPath: string | undefined
  let listening: Array<{ address: string; port: number }> | undefined = pids.length ? [] : undefined
  const addMetrics = (m: string | undefined): void => {
    const port = m ? Number(/:(\d+)$/.exec(m)?.[1]) : NaN
    if (Number.isInteger(port)) facts.otherPorts.push(port)
  }
  for (const pid of pids) {
    const argv = (await readFile(`${proc}/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0').filter(Boolean)
    const a = parseDockerdArgs(argv)
    facts.hosts.push(...a.hosts)
    if (a.tlsVerify !== undefined) tlsFlag = a.tlsVerify
    configPath ??= a.configFile
    addMetrics(a.metricsAddr)
    const env = await readFile(`${proc}/${pid}/environ`, 'utf8').catch(() => '')
    if (/(^|\0)DOCKER_TLS_VERIFY=[^\0]/.test(env)) tlsEnv = true
    const socks = await listeningSockets(pid, proc)
    if (socks === undefined) listening = undefined
    else listening?.push(...socks)
  }
  configPath ??= opts.daemonJson ?? '/etc/docker/daemon.json'
  let tlsConfig: boolean | undefined
  try {
    const c = parseDaemonJson(await readFile(configPath, 'utf8'))
    facts.hosts.push(...c.hosts)
    tlsConfig = c.tlsVerify
    addMetrics(c.metricsAddr)
    facts.config = { path: configPath }
  } catch (e) {
    const err = e as NodeJS.ErrnoException
    if (err.code !== 'ENOENT') facts.config = { path: configPath, error: err.message }
  }
  // dockerd refuses a flag that daemon.json also sets, so at most one of the two is there.
  facts.tlsVerify = tlsFlag ?? tlsConfig ?? tlsEnv
  if (listening) facts.listening = listening
  if (pids.length === 0 && !facts.hosts.some((h) => tcpHost(h, false))) return undefined
  return facts
}

/** The state to report, or undefined when no dockerd runs here and none is configured for TCP. */
export async function dockerApiState(opts: InspectOptions = {}): Promise<DockerApiState | undefined> {
  const f = await inspectDockerd(opts)
  return f ? judgeDockerApi(f) : undefined
}

/** The agent's view: looked at on start and every `intervalMs` (default 60 s); a change is logged (at warn when exposed). */
export function createDockerApiMonitor(opts: InspectOptions & { intervalMs?: number; log: { warn: (o: object, m: string) => void; info: (o: object, m: string) => void } }): {
  start(): Promise<void>
  stop(): void
  current(): DockerApiState | undefined
} {
  let state: DockerApiState | undefined
  let timer: NodeJS.Timeout | undefined
  const look = async (): Promise<void> => {
    const next = await dockerApiState(opts).catch(() => state)
    if (next && (next.verdict !== state?.verdict || next.detail !== state.detail)) {
      if (next.verdict === 'ok') opts.log.info({ dockerApi: next.verdict }, next.detail)
      else opts.log.warn({ dockerApi: next.verdict, fix: FIXES[next.verdict] }, `Docker API: ${next.detail}`)
    }
    state = next
  }
  return {
    async start() {
      await look()
      timer = setInterval(() => void look(), opts.intervalMs ?? 60_000)
      timer.unref()
    },
    stop() {
      clearInterval(timer)
    },
    current: () => state,
  }
}
