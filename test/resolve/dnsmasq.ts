// Test helper: a real dnsmasq upstream on 127.0.0.1 at a random high port, stopped at teardown.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { resolveName } from '../../src/resolve/dns-client.js'

type T = { teardown: (fn: () => unknown) => void }

export interface Dnsmasq {
  port: number
  /** An --addn-hosts file; rewrite with setHosts() and the answers change (SIGHUP). */
  hostsPath: string
  setHosts(text: string): Promise<void>
  child: ChildProcess
}

/**
 * Start dnsmasq with `args` (plus an --addn-hosts file). Waits until it answers `probe.example`.
 * `listen` defaults to 127.0.0.1 (loopback of the test's own namespace: nothing leaves the machine).
 */
export async function startDnsmasq(t: T, args: string[], opts: { listen?: string; hosts?: string } = {}): Promise<Dnsmasq> {
  const dir = mkdtempSync(join(tmpdir(), `eg-dnsmasq-${process.pid}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const hostsPath = join(dir, 'hosts')
  writeFileSync(hostsPath, opts.hosts ?? '')
  const listen = opts.listen ?? '127.0.0.1'
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 40000)
    const full = [
      '--no-daemon', '--no-resolv', '--no-hosts', `--port=${port}`, `--listen-address=${listen}`, '--bind-interfaces',
      `--pid-file=${join(dir, 'pid')}`, `--addn-hosts=${hostsPath}`, '--host-record=probe.example,192.0.2.254', ...args,
    ]
    const child = spawn('dnsmasq', full, { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr!.on('data', (d) => (stderr += d))
    t.teardown(() => {
      if (child.exitCode === null) child.kill('SIGKILL')
    })
    const ready = await waitReady(listen, port, child)
    if (!ready) {
      if (/Address already in use/i.test(stderr)) continue
      throw new Error(`dnsmasq did not start: ${stderr}`)
    }
    return {
      port,
      hostsPath,
      child,
      async setHosts(text) {
        writeFileSync(hostsPath, text)
        child.kill('SIGHUP')
        // SIGHUP re-reads addn-hosts asynchronously; a short pause lets it finish.
        await new Promise((r) => setTimeout(r, 300))
      },
    }
  }
  throw new Error('could not find a free port for dnsmasq')
}

async function waitReady(address: string, port: number, child: ChildProcess): Promise<boolean> {
  for (let i = 0; i < 50; i++) {
    if (child.exitCode !== null) return false
    try {
      const r = await resolveName('probe.example', { upstreams: [{ address, port }], timeoutMs: 200, attempts: 1 })
      if (r.addrs.length > 0) return true
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  return false
}
