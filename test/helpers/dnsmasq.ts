// A real upstream DNS server for tests: dnsmasq on 127.0.0.1 (or a namespace) with given records on a
// free port, killed in teardown. Nothing here reads the host's resolv.conf or /etc/hosts.
import { spawn, type ChildProcess } from 'node:child_process'
import dgram from 'node:dgram'
import net from 'node:net'
import dnsPacket from 'dns-packet'

type T = { teardown: (fn: () => unknown) => void }

export interface DnsmasqOptions {
  /** Listen address (default 127.0.0.1). */
  address?: string
  /** Fixed port; default: a free one picked for you. */
  port?: number
  /** `--host-record=name,ip[,ip...]` lines: name -> addresses (A and/or AAAA). */
  hosts?: Record<string, string[]>
  /** `--cname=alias,target` lines. */
  cnames?: Record<string, string>
  /** `--address=/domain/ip` lines: the domain and everything under it (ip "" means NXDOMAIN). */
  addresses?: Record<string, string>
  /** Extra raw dnsmasq arguments (tests control these; never from a blocklist). */
  extraArgs?: string[]
  /** Run inside this network namespace (via `ip netns exec`). */
  netns?: string
}

export interface Dnsmasq {
  address: string
  port: number
  process: ChildProcess
  /** Lines dnsmasq wrote to stderr (for debugging a failing test). */
  log: () => string
  stop: () => Promise<void>
}

/** Ask the OS for a port that is free for both UDP and TCP on `address` right now. */
export async function freePort(address = '127.0.0.1'): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = net.createServer()
      s.once('error', reject)
      s.listen(0, address, () => {
        const p = (s.address() as net.AddressInfo).port
        s.close(() => resolve(p))
      })
    })
    const udpFree = await new Promise<boolean>((resolve) => {
      const u = dgram.createSocket(address.includes(':') ? 'udp6' : 'udp4')
      u.once('error', () => resolve(false))
      u.bind(port, address, () => u.close(() => resolve(true)))
    })
    if (udpFree) return port
  }
  throw new Error('no free port found')
}

/** One UDP query; resolves to the decoded answer or undefined on timeout. */
export function udpQuery(address: string, port: number, name: string, type: dnsPacket.RecordType = 'A', timeoutMs = 1000): Promise<dnsPacket.Packet | undefined> {
  return new Promise((resolve) => {
    const s = dgram.createSocket(address.includes(':') ? 'udp6' : 'udp4')
    const timer = setTimeout(() => {
      s.close()
      resolve(undefined)
    }, timeoutMs)
    s.on('error', () => undefined)
    s.on('message', (m) => {
      clearTimeout(timer)
      s.close()
      try {
        resolve(dnsPacket.decode(m))
      } catch {
        resolve(undefined)
      }
    })
    s.send(dnsPacket.encode({ type: 'query', id: 4242, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type, class: 'IN' }] }), port, address)
  })
}

/** Start dnsmasq with these records; resolves once it answers. Stopped at teardown (also on failure). */
export async function startDnsmasq(t: T, opts: DnsmasqOptions = {}): Promise<Dnsmasq> {
  const address = opts.address ?? '127.0.0.1'
  let lastErr = ''
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = opts.port ?? (await freePort(opts.netns ? '127.0.0.1' : address))
    const args = [
      '--no-daemon',
      '--conf-file=/dev/null',
      '--no-resolv',
      '--no-hosts',
      '--no-poll',
      '--pid-file=',
      '--bind-interfaces',
      `--listen-address=${address}`,
      `--port=${port}`,
      '--cache-size=0',
      ...Object.entries(opts.hosts ?? {}).map(([n, ips]) => `--host-record=${n},${ips.join(',')}`),
      ...Object.entries(opts.cnames ?? {}).map(([a, b]) => `--cname=${a},${b}`),
      ...Object.entries(opts.addresses ?? {}).map(([d, ip]) => `--address=/${d}/${ip}`),
      ...(opts.extraArgs ?? []),
    ]
    const [file, argv] = opts.netns ? ['ip', ['netns', 'exec', opts.netns, 'dnsmasq', ...args]] : ['dnsmasq', args]
    const child = spawn(file as string, argv as string[], { stdio: ['ignore', 'ignore', 'pipe'] })
    let log = ''
    child.stderr!.on('data', (d) => (log += String(d)))
    const stop = (): Promise<void> =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        child.once('exit', () => resolve())
        child.kill('SIGKILL')
      })
    t.teardown(stop)
    // Wait until it answers (or dies, e.g. the port was taken between probe and bind).
    const deadline = Date.now() + 5000
    let ready = false
    while (Date.now() < deadline && child.exitCode === null) {
      if (opts.netns) {
        // Cannot reach a namespace's loopback from here: give it a moment and trust the exit code.
        await new Promise((r) => setTimeout(r, 300))
        ready = child.exitCode === null
        break
      }
      const r = await udpQuery(address, port, 'readiness-probe.invalid', 'A', 200)
      if (r) {
        ready = true
        break
      }
    }
    if (ready) return { address, port, process: child, log: () => log, stop }
    lastErr = log
    await stop()
    if (opts.port !== undefined) break
  }
  throw new Error(`dnsmasq did not start: ${lastErr.trim().slice(0, 500)}`)
}

export interface DigResult {
  status: string
  flags: string[]
  /** Answer section: [name, type, data] (names without the trailing dot). */
  answers: Array<[string, string, string]>
  ttls: number[]
  /** `; EDE: 15 (Blocked): (text)` lines, as printed. */
  ede: string[]
  timedOut: boolean
  raw: string
}

/** Run the real `dig` (bind9-dnsutils) once: `dig @server -p port name type +tries=1 +time=3 ...extra` (later flags win). */
export function dig(server: string, port: number, name: string, type = 'A', extra: string[] = [], netns?: string): Promise<DigResult> {
  const args = [`@${server}`, '-p', String(port), name, type, '+tries=1', '+time=3', ...extra]
  const [file, argv] = netns ? ['ip', ['netns', 'exec', netns, 'dig', ...args]] : ['dig', args]
  return new Promise((resolve) => {
    const child = spawn(file as string, argv as string[], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout!.on('data', (d) => (out += String(d)))
    child.stderr!.on('data', (d) => (out += String(d)))
    child.on('close', () => {
      const status = /status: ([A-Z]+)/.exec(out)?.[1] ?? ''
      const flags = (/;; flags: ([a-z ]+)[;:]/.exec(out)?.[1] ?? '').trim().split(/\s+/).filter(Boolean)
      const answers: Array<[string, string, string]> = []
      const ttls: number[] = []
      const sec = /;; ANSWER SECTION:\n([\s\S]*?)\n\n/.exec(out)?.[1] ?? ''
      for (const line of sec.split('\n')) {
        const m = /^(\S+)\s+(\d+)\s+IN\s+(\S+)\s+(.*)$/.exec(line.trim())
        if (m) {
          answers.push([m[1]!.replace(/\.$/, ''), m[3]!, m[4]!.replace(/\.$/, '')])
          ttls.push(Number(m[2]))
        }
      }
      const ede = out.split('\n').filter((l) => l.startsWith('; EDE:'))
      resolve({ status, flags, answers, ttls, ede, timedOut: /timed out|no servers could be reached/.test(out) && status === '', raw: out })
    })
  })
}
