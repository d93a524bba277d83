// Real traffic for enforcement tests: a TCP listener + UDP echo (one node process, dual stack) inside
// a namespace, and probes that run inside another namespace and report how a connection ended.
import { execFile } from 'node:child_process'
import { spawnInNs } from './netns.js'

type T = { teardown: (fn: () => unknown) => void }

const SERVER = `
const net = require('node:net'), dgram = require('node:dgram');
const port = Number(process.argv[1]), addrs = process.argv.slice(2);
// One UDP socket per address: a wildcard socket would answer from the primary address and a
// connected client socket would ignore the reply.
let pending = addrs.length;
net.createServer((s) => { s.end('hi\\n'); s.on('error', () => {}); }).listen({ port, host: '::', ipv6Only: false }, () => {
  for (const a of addrs) {
    const u = dgram.createSocket(a.includes(':') ? 'udp6' : 'udp4');
    u.on('message', (m, r) => u.send(m, r.port, r.address));
    u.bind(port, a, () => { if (--pending === 0) process.stdout.write('ready\\n'); });
  }
});`

/** TCP on every address of `ns`, UDP echo on each of `udpAddrs` (same port); resolves once all are bound. */
export function startEchoServer(t: T, ns: string, port: number, udpAddrs: readonly string[]): Promise<void> {
  const child = spawnInNs(t, ns, process.execPath, ['-e', SERVER, String(port), ...udpAddrs])
  return new Promise((resolve, reject) => {
    let out = ''
    child.stdout!.on('data', (d) => {
      out += String(d)
      if (out.includes('ready')) resolve()
    })
    child.stderr!.on('data', (d) => (out += String(d)))
    child.on('exit', (code) => reject(new Error(`echo server exited ${code}: ${out}`)))
  })
}

const PROBE = `
const net = require('node:net'), dgram = require('node:dgram');
const [proto, host, port, ms] = [process.argv[1], process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const done = (r) => { process.stdout.write(JSON.stringify(r)); process.exit(0); };
setTimeout(() => done({ ok: false, code: 'TIMEOUT' }), ms);
if (proto === 'tcp') {
  const s = net.connect({ host, port });
  s.on('connect', () => done({ ok: true }));
  s.on('error', (e) => done({ ok: false, code: e.code }));
} else {
  const u = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  u.on('error', (e) => done({ ok: false, code: e.code }));
  u.on('message', () => done({ ok: true }));
  // A connected UDP socket gets the ICMP unreachable back as ECONNREFUSED; send a few in case one is lost.
  u.connect(port, host, () => { const send = () => u.send('ping', (e) => e && done({ ok: false, code: e.code })); send(); setInterval(send, 200); });
}`

export interface ProbeResult {
  ok: boolean
  /** ECONNREFUSED (TCP reset / ICMP port unreachable), EHOSTUNREACH, TIMEOUT, ... */
  code?: string
}

/** Try one TCP connect or one UDP round trip from inside `ns`. */
export function probe(ns: string, proto: 'tcp' | 'udp', host: string, port: number, timeoutMs = 5000): Promise<ProbeResult> {
  return new Promise((resolve, reject) => {
    execFile('ip', ['netns', 'exec', ns, process.execPath, '-e', PROBE, proto, host, String(port), String(timeoutMs)], { timeout: timeoutMs + 5000 }, (err, stdout) => {
      if (err && !stdout) return reject(err)
      try {
        resolve(JSON.parse(stdout) as ProbeResult)
      } catch {
        reject(new Error(`probe output: ${stdout}`))
      }
    })
  })
}
