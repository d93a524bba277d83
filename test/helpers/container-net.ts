// A Docker-like topology in throwaway namespaces for the container-egress tests, without dockerd:
// two "container" namespaces on a bridge in a "host" namespace (which forwards, and runs the
// sinkhole's port 53 on the bridge address), and a "remote" namespace with the destinations.
// Everything is torn down with the test.
import { spawn } from 'node:child_process'
import { inNs, makeNs, sh, spawnInNs } from './netns.js'
import { startEchoServer } from './traffic.js'

type T = { teardown: (fn: () => unknown) => void }

export const CT = {
  bridge4: '172.30.0.1',
  bridge6: 'fd00:30::1',
  c1: { v4: '172.30.0.2', v6: 'fd00:30::2' },
  c2: { v4: '172.30.0.3', v6: 'fd00:30::3' },
  /** Remote destinations (documentation ranges). */
  dstA4: '198.51.100.10',
  dstB4: '198.51.100.11',
  dstC4: '198.51.100.12',
  dstD4: '198.51.100.13',
  /** Blocked by the fleet policy (a fleet-wide block wins over a learned pair). */
  fleetBlocked4: '198.51.100.14',
  /** Allowed (@@) by the fleet policy (does not open a default-deny container). */
  fleetAllowed4: '198.51.100.15',
  /** Inside the profile net 198.51.100.16/28. */
  net4: '198.51.100.20',
  netCidr4: '198.51.100.16/28',
  /** Another DNS server (UDP/TCP 53, TCP 853): the one a container must not reach. */
  dns4: '198.51.100.53',
  dstA6: '2001:db8:1::10',
  dns6: '2001:db8:1::53',
  /** TCP+UDP echo on the remote addresses. */
  port: 8080,
  otherPort: 8081,
  /** A TCP echo server that keeps the connection open (sessions). */
  sessionPort: 9000,
} as const

export interface CtNet {
  host: string
  c1: string
  c2: string
  remote: string
}

let n = 0

export interface CtNetOptions {
  /** Create a DOCKER-USER chain jumped to from FORWARD, as Docker does (with these binaries). */
  dockerUser?: { ipt: string; ip6t: string }
  /** Start the echo servers (default true). */
  servers?: boolean
}

export async function makeContainerNet(t: T, opts: CtNetOptions = {}): Promise<CtNet> {
  const host = makeNs(t, 'h')
  const c1 = makeNs(t, 'c')
  const c2 = makeNs(t, 'c')
  const remote = makeNs(t, 'r')
  const id = `${process.pid % 1000}${n++}`
  inNs(host, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1'])
  sh('ip', ['-n', host, 'link', 'add', 'egbr0', 'type', 'bridge'])
  sh('ip', ['-n', host, 'addr', 'add', `${CT.bridge4}/24`, 'dev', 'egbr0'])
  sh('ip', ['-n', host, 'addr', 'add', `${CT.bridge6}/64`, 'dev', 'egbr0', 'nodad'])
  sh('ip', ['-n', host, 'link', 'set', 'egbr0', 'up'])
  for (const [i, [ns, a]] of ([[c1, CT.c1], [c2, CT.c2]] as const).entries()) {
    const ci = `vc${id}${i}`.slice(0, 15)
    const hi = `vh${id}${i}`.slice(0, 15)
    sh('ip', ['link', 'add', ci, 'netns', ns, 'type', 'veth', 'peer', 'name', hi, 'netns', host])
    sh('ip', ['-n', host, 'link', 'set', hi, 'master', 'egbr0', 'up'])
    sh('ip', ['-n', ns, 'addr', 'add', `${a.v4}/24`, 'dev', ci])
    sh('ip', ['-n', ns, 'addr', 'add', `${a.v6}/64`, 'dev', ci, 'nodad'])
    sh('ip', ['-n', ns, 'link', 'set', ci, 'up'])
    sh('ip', ['-n', ns, 'route', 'add', 'default', 'via', CT.bridge4])
    sh('ip', ['-n', ns, '-6', 'route', 'add', 'default', 'via', CT.bridge6])
  }
  const hr = `vr${id}h`.slice(0, 15)
  const rr = `vr${id}r`.slice(0, 15)
  sh('ip', ['link', 'add', hr, 'netns', host, 'type', 'veth', 'peer', 'name', rr, 'netns', remote])
  sh('ip', ['-n', host, 'addr', 'add', '203.0.113.1/24', 'dev', hr])
  sh('ip', ['-n', host, 'addr', 'add', '2001:db8:ffff::1/64', 'dev', hr, 'nodad'])
  sh('ip', ['-n', remote, 'addr', 'add', '203.0.113.2/24', 'dev', rr])
  sh('ip', ['-n', remote, 'addr', 'add', '2001:db8:ffff::2/64', 'dev', rr, 'nodad'])
  const remote4 = [CT.dstA4, CT.dstB4, CT.dstC4, CT.dstD4, CT.fleetBlocked4, CT.fleetAllowed4, CT.net4, CT.dns4]
  const remote6 = [CT.dstA6, CT.dns6]
  for (const a of remote4) sh('ip', ['-n', remote, 'addr', 'add', `${a}/32`, 'dev', rr])
  for (const a of remote6) sh('ip', ['-n', remote, 'addr', 'add', `${a}/128`, 'dev', rr, 'nodad'])
  for (const [ns, i] of [[host, hr], [remote, rr]] as const) sh('ip', ['-n', ns, 'link', 'set', i, 'up'])
  sh('ip', ['-n', host, 'route', 'add', '198.51.100.0/24', 'via', '203.0.113.2'])
  sh('ip', ['-n', host, '-6', 'route', 'add', '2001:db8:1::/64', 'via', '2001:db8:ffff::2'])
  sh('ip', ['-n', remote, 'route', 'add', '172.30.0.0/24', 'via', '203.0.113.1'])
  sh('ip', ['-n', remote, '-6', 'route', 'add', 'fd00:30::/64', 'via', '2001:db8:ffff::1'])
  if (opts.dockerUser) {
    for (const bin of [opts.dockerUser.ipt, opts.dockerUser.ip6t]) {
      inNs(host, bin, ['-N', 'DOCKER-USER'])
      inNs(host, bin, ['-A', 'DOCKER-USER', '-j', 'RETURN'])
      inNs(host, bin, ['-I', 'FORWARD', '1', '-j', 'DOCKER-USER'])
    }
  }
  if (opts.servers !== false) {
    await Promise.all([
      // The sinkhole's port on the bridge addresses (TCP on all host addresses).
      startEchoServer(t, host, 53, [CT.bridge4, CT.bridge6]),
      startEchoServer(t, remote, CT.port, [...remote4, ...remote6]),
      startEchoServer(t, remote, CT.otherPort, [...remote4, ...remote6]),
      startEchoServer(t, remote, 53, [CT.dns4, CT.dns6]),
      startEchoServer(t, remote, 853, [CT.dns4]),
      startSessionServer(t, remote, CT.sessionPort),
    ])
  }
  return { host, c1, c2, remote }
}

const SESSION_SERVER = `
require('node:net').createServer((s) => { s.on('error', () => {}); s.pipe(s); })
  .listen({ port: Number(process.argv[1]), host: '::', ipv6Only: false }, () => process.stdout.write('ready\\n'));`

/** A TCP echo server that keeps every connection open: the far end of a long-lived session. */
export function startSessionServer(t: T, ns: string, port: number): Promise<void> {
  const child = spawnInNs(t, ns, process.execPath, ['-e', SESSION_SERVER, String(port)])
  return new Promise((resolve, reject) => {
    child.stdout!.once('data', () => resolve())
    child.on('exit', (code) => reject(new Error(`session server exited ${code}`)))
  })
}

const SESSION_CLIENT = `
let s = null, waiting = null, dead = null;
const say = (m) => process.stdout.write(m + '\\n');
function open() {
  s = require('node:net').connect({ host: process.argv[1], port: Number(process.argv[2]) });
  s.on('connect', () => say('connected'));
  s.on('error', (e) => { dead = 'error ' + e.code; if (waiting) { clearTimeout(waiting); waiting = null; } say(dead); });
  s.on('close', () => { if (!dead) { dead = 'closed'; say(dead); } });
  s.on('data', () => { if (waiting) { clearTimeout(waiting); waiting = null; say('ok'); } });
}
process.stdin.on('data', () => {
  if (!s) return open();
  if (dead) return say(dead);
  s.write('x');
  waiting = setTimeout(() => { waiting = null; say('timeout'); }, 1500);
});
say('ready');`

export interface Session {
  /** Connect now: 'connected' or 'error CODE'. */
  open(): Promise<string>
  /** Send a byte and wait for its echo: 'ok', 'timeout', 'error CODE' or 'closed'. */
  roundTrip(): Promise<string>
}

/**
 * A long-lived TCP session from `ns` to `host:port` (a session server), driven from the test. The
 * client process is started first and connects only on open(), so a slow process start on a loaded
 * machine never eats into a short-lived learned pair.
 */
export async function startSession(t: T, ns: string, host: string, port: number): Promise<Session> {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', SESSION_CLIENT, host, String(port)], { stdio: ['pipe', 'pipe', 'inherit'] })
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
  })
  const lines: string[] = []
  const waiters: ((l: string) => void)[] = []
  let buf = ''
  child.stdout!.setEncoding('utf8')
  child.stdout!.on('data', (d: string) => {
    buf += d
    let i: number
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, i)
      buf = buf.slice(i + 1)
      const w = waiters.shift()
      if (w) w(l)
      else lines.push(l)
    }
  })
  const next = (): Promise<string> => (lines.length > 0 ? Promise.resolve(lines.shift()!) : new Promise((r) => waiters.push(r)))
  const ready = await next()
  if (ready !== 'ready') throw new Error(`session client: ${ready}`)
  const poke = (): Promise<string> => {
    child.stdin!.write('p')
    return next()
  }
  return { open: poke, roundTrip: poke }
}

const PROBER = `
const net = require('node:net'), dgram = require('node:dgram'), rl = require('node:readline');
const say = (id, r) => process.stdout.write(JSON.stringify({ id, ...r }) + '\\n');
rl.createInterface({ input: process.stdin }).on('line', (line) => {
  const { id, proto, host, port, ms } = JSON.parse(line);
  let over = false;
  const done = (r) => { if (over) return; over = true; clearTimeout(timer); cleanup(); say(id, r); };
  const timer = setTimeout(() => done({ ok: false, code: 'TIMEOUT' }), ms);
  let cleanup = () => {};
  if (proto === 'tcp') {
    const s = net.connect({ host, port });
    cleanup = () => s.destroy();
    s.on('connect', () => done({ ok: true }));
    s.on('error', (e) => done({ ok: false, code: e.code }));
  } else {
    const u = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    let iv;
    cleanup = () => { clearInterval(iv); u.close(); };
    u.on('error', (e) => done({ ok: false, code: e.code }));
    u.on('message', () => done({ ok: true }));
    // A connected UDP socket gets the ICMP unreachable back as ECONNREFUSED; resend in case one is lost.
    u.connect(port, host, () => { const send = () => u.send('ping', (e) => e && done({ ok: false, code: e.code })); send(); iv = setInterval(send, 200); });
  }
});
process.stdout.write(JSON.stringify({ ready: true }) + '\\n');`

export interface Prober {
  probe(proto: 'tcp' | 'udp', host: string, port: number, timeoutMs?: number): Promise<{ ok: boolean; code?: string }>
}

/**
 * One long-lived probing process inside `ns` (a node start per probe costs seconds on a loaded
 * machine): each probe is one TCP connect or one UDP round trip, answered as a JSON line.
 */
export async function startProber(t: T, ns: string): Promise<Prober> {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', PROBER], { stdio: ['pipe', 'pipe', 'inherit'] })
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
  })
  const waiting = new Map<number, (r: { ok: boolean; code?: string }) => void>()
  let ready!: () => void
  const isReady = new Promise<void>((r) => (ready = r))
  let buf = ''
  child.stdout!.setEncoding('utf8')
  child.stdout!.on('data', (d: string) => {
    buf += d
    let i: number
    while ((i = buf.indexOf('\n')) >= 0) {
      const m = JSON.parse(buf.slice(0, i)) as { id?: number; ready?: boolean; ok: boolean; code?: string }
      buf = buf.slice(i + 1)
      if (m.ready) ready()
      else if (m.id !== undefined) {
        waiting.get(m.id)?.({ ok: m.ok, ...(m.code ? { code: m.code } : {}) })
        waiting.delete(m.id)
      }
    }
  })
  await isReady
  let next = 0
  return {
    probe(proto, host, port, timeoutMs = 2500) {
      const id = next++
      return new Promise((resolve) => {
        waiting.set(id, resolve)
        child.stdin!.write(JSON.stringify({ id, proto, host, port, ms: timeoutMs }) + '\n')
      })
    },
  }
}
