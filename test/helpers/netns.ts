// Throwaway network namespaces for kernel and DNS tests. Never touch the root namespace:
// every address and rule lives in a namespace made here and deleted in teardown, even on failure.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'

let counter = 0
type T = { teardown: (fn: () => unknown) => void }

export function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] })
}

export function inNs(ns: string, cmd: string, args: string[], input?: string): string {
  return sh('ip', ['netns', 'exec', ns, cmd, ...args], input)
}

/** Create a namespace with lo up; deleted at teardown. Names are short (IFNAMSIZ) and unique per process. */
export function makeNs(t: T, tag: string): string {
  const name = `eg${tag}${process.pid % 100000}x${counter++}`.slice(0, 30)
  sh('ip', ['netns', 'add', name])
  t.teardown(() => {
    try {
      sh('ip', ['netns', 'del', name])
    } catch {
      /* already gone */
    }
  })
  sh('ip', ['-n', name, 'link', 'set', 'lo', 'up'])
  return name
}

/**
 * Join two namespaces with a veth pair. Addresses like '198.51.100.1/24' and optional IPv6
 * '2001:db8:1::1/64'. Interface names are derived to stay under 15 characters.
 */
export function link(a: string, aAddrs: string[], b: string, bAddrs: string[]): { aIf: string; bIf: string } {
  const id = `${process.pid % 10000}${counter++}`
  const aIf = `va${id}`.slice(0, 15)
  const bIf = `vb${id}`.slice(0, 15)
  sh('ip', ['link', 'add', aIf, 'netns', a, 'type', 'veth', 'peer', 'name', bIf, 'netns', b])
  for (const [ns, ifc, addrs] of [[a, aIf, aAddrs], [b, bIf, bAddrs]] as const) {
    for (const addr of addrs) sh('ip', ['-n', ns, 'addr', 'add', addr, 'dev', ifc, ...(addr.includes(':') ? ['nodad'] : [])])
    sh('ip', ['-n', ns, 'link', 'set', ifc, 'up'])
  }
  return { aIf, bIf }
}

/** Start a long-running process inside a namespace; killed at teardown. */
export function spawnInNs(t: T, ns: string, cmd: string, args: string[]): ChildProcess {
  const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
  })
  return child
}
