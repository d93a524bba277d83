// A real Docker engine for end-to-end tests, confined to a throwaway network namespace (its bridge,
// NAT and DOCKER-USER chain live there, never on the machine), with a busybox image imported from the
// static busybox. Everything is undone in teardown, also when the test fails.
import { execFile, spawn } from 'node:child_process'
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, readdirSync, rmSync, symlinkSync, copyFileSync } from 'node:fs'
import { join } from 'node:path'

type T = { teardown: (fn: () => unknown) => void; comment?: (...a: unknown[]) => void }

export interface DockerEnv {
  /** The namespace dockerd (and its containers' bridge) lives in. */
  ns: string
  /** The engine's API socket (short path: unix socket paths must stay under 108 bytes). */
  sock: string
  /** `docker -H unix://SOCK ...args`; resolves to stdout, rejects with stderr on failure. */
  docker(args: string[]): Promise<string>
  /** The docker0 address inside the namespace (172.17.0.1 unless the engine chose otherwise). */
  bridgeIp: string
  /** The temporary directory holding data-root, exec-root, pidfile and the daemon log. */
  dir: string
  /** The daemon's log so far (for a failing test's diagnostics). */
  log(): string
  /**
   * Stop dockerd (SIGTERM, like `systemctl restart docker`), run `between` while it is down, start it
   * again and wait for its API. `args` replace the extra dockerd flags from then on (e.g. a new --bip).
   */
  restart(between?: () => Promise<void> | void, args?: string[]): Promise<void>
}

/** The image every e2e test uses: busybox with sh, nslookup, wget, nc, cat, sleep. */
export const BUSYBOX_IMAGE = 'eg-busybox:test'

let counter = 0

function exec(cmd: string, args: string[], timeoutMs = 120_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${String(stderr).trim() || err.message}`))
      else resolve(stdout)
    })
  })
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Processes whose command line mentions our private directory: dockerd, its containerd, the shims. */
function pidsUsing(dir: string): number[] {
  const out: number[] = []
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue
    try {
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(dir)) out.push(Number(p))
    } catch {
      /* exited meanwhile */
    }
  }
  return out
}

/** Mount points under dir (overlay layers, shm, netns bind mounts), deepest first. */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .map((m) => m.replace(/\\040/g, ' '))
    .filter((m) => m === dir || m.startsWith(dir + '/'))
    .sort((a, b) => b.length - a.length)
}

/**
 * Start dockerd inside a fresh namespace and wait until it answers. `nsenter --net`, not `ip netns exec`:
 * the latter remounts /sys and dockerd then finds no cgroups. dockerd keeps `--iptables` on (it builds
 * DOCKER-USER inside the namespace). Teardown removes containers, stops the daemon (SIGTERM, then
 * SIGKILL of what is left), unmounts, deletes the namespace and the directory. `args` are extra dockerd
 * flags (e.g. `-H tcp://0.0.0.0:2375` for the exposed-API check); `before` runs in the new namespace's
 * life before dockerd starts (an "eth0" made first, as on a host; a program started before Docker).
 */
export async function startDocker(t: T, opts: { args?: string[]; before?: (ns: string) => Promise<void> | void } = {}): Promise<DockerEnv> {
  const n = counter++
  const ns = `egdk${process.pid % 100000}x${n}`
  const dir = `/tmp/egd-${process.pid}-${n}`
  const sock = join(dir, 'docker.sock')
  const pidfile = join(dir, 'pid')
  const logfile = join(dir, 'log')
  const host = `unix://${sock}`
  const docker = (args: string[]) => exec('docker', ['-H', host, ...args])
  let daemonPid: number | undefined

  t.teardown(async () => {
    try {
      if (existsSync(sock)) {
        const ids = (await docker(['ps', '-aq']).catch(() => '')).split('\n').filter(Boolean)
        if (ids.length > 0) await docker(['rm', '-f', ...ids]).catch(() => undefined)
      }
    } finally {
      const pid = existsSync(pidfile) ? Number(readFileSync(pidfile, 'utf8').trim()) || daemonPid : daemonPid
      if (pid && alive(pid)) {
        process.kill(pid, 'SIGTERM')
        for (let i = 0; i < 200 && alive(pid); i++) await sleep(100)
      }
      // Whatever survived (a SIGKILLed dockerd leaves containerd and shims): by pid, only ours.
      for (const p of pidsUsing(dir)) {
        try {
          process.kill(p, 'SIGKILL')
        } catch {
          /* gone */
        }
      }
      for (let i = 0; i < 50 && pidsUsing(dir).length > 0; i++) await sleep(100)
      for (const m of mountsUnder(dir)) await exec('umount', ['-l', m]).catch(() => undefined)
      await exec('ip', ['netns', 'del', ns]).catch(() => undefined)
      rmSync(dir, { recursive: true, force: true })
    }
  })

  mkdirSync(dir, { recursive: true })
  await exec('ip', ['netns', 'add', ns])
  await exec('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  const log = () => (existsSync(logfile) ? readFileSync(logfile, 'utf8') : '')
  let extra = opts.args ?? []
  const launch = async (): Promise<void> => {
    const logFd = openSync(logfile, 'a')
    const child = spawn(
      'setsid',
      ['nsenter', `--net=/var/run/netns/${ns}`, 'dockerd', '--data-root', join(dir, 'data'), '--exec-root', join(dir, 'exec'), '--pidfile', pidfile, '-H', host, ...extra],
      { stdio: ['ignore', logFd, logFd] },
    )
    closeSync(logFd)
    daemonPid = child.pid
    let exited: string | undefined
    child.on('exit', (code, sig) => (exited = `dockerd exited (${code ?? sig})`))

    const deadline = Date.now() + 60_000
    for (;;) {
      if (exited) throw new Error(`${exited}:\n${log().split('\n').slice(-20).join('\n')}`)
      if (existsSync(sock)) {
        try {
          await docker(['version', '--format', '{{.Server.Version}}'])
          break
        } catch {
          /* socket there, API not ready yet */
        }
      }
      if (Date.now() > deadline) throw new Error(`dockerd did not answer within 60 s:\n${log().split('\n').slice(-20).join('\n')}`)
      await sleep(200)
    }
  }
  await opts.before?.(ns)
  await launch()
  const restart = async (between?: () => Promise<void> | void, args?: string[]): Promise<void> => {
    const pid = daemonPid
    if (pid && alive(pid)) {
      process.kill(pid, 'SIGTERM')
      for (let i = 0; i < 300 && alive(pid); i++) await sleep(100)
    }
    await between?.()
    if (args) extra = args
    await launch()
  }

  // No registry here: an image from the static busybox, with the applets tests use linked in.
  const rootfs = join(dir, 'rootfs')
  mkdirSync(join(rootfs, 'bin'), { recursive: true })
  mkdirSync(join(rootfs, 'etc'), { recursive: true })
  copyFileSync('/bin/busybox', join(rootfs, 'bin', 'busybox'))
  for (const c of ['sh', 'nslookup', 'wget', 'nc', 'cat', 'sleep', 'ip', 'hostname', 'echo']) symlinkSync('busybox', join(rootfs, 'bin', c))
  const tarball = join(dir, 'busybox.tar')
  await exec('tar', ['-C', rootfs, '-cf', tarball, '.'])
  await docker(['import', tarball, BUSYBOX_IMAGE])

  const addr = await exec('ip', ['-n', ns, '-4', '-o', 'addr', 'show', 'dev', 'docker0'])
  const bridgeIp = /inet (\d+\.\d+\.\d+\.\d+)\//.exec(addr)?.[1]
  if (!bridgeIp) throw new Error(`no docker0 address in ${ns}: ${addr}`)
  return { ns, sock, docker, bridgeIp, dir, log, restart }
}
