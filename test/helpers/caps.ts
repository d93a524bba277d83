// Capability gates for tests that need root, network namespaces, Docker or a browser.
// On a laptop a missing capability skips with a printed reason; under CI=true it is a failure.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'

// Loose on purpose: tap's Test has overloaded skip/fail signatures.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type T = { skip: (...a: any[]) => unknown; fail: (...a: any[]) => unknown }

const cache = new Map<string, string | null>()

function probe(name: string, fn: () => string | null): string | null {
  if (!cache.has(name)) {
    let r: string | null
    try {
      r = fn()
    } catch (e) {
      r = `${name}: ${(e as Error).message.split('\n')[0]}`
    }
    cache.set(name, r)
  }
  return cache.get(name)!
}

function which(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', 'command -v "$1"', 'sh', cmd], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** Returns a reason string when missing, null when present. */
export const capabilities = {
  root: () => probe('root', () => (process.getuid?.() === 0 ? null : 'not running as root')),
  netns: () =>
    probe('netns', () => {
      if (process.getuid?.() !== 0) return 'network namespaces need root'
      if (!which('ip')) return 'ip (iproute2) not installed'
      const n = `eg-probe-${process.pid}`
      execFileSync('ip', ['netns', 'add', n], { stdio: 'pipe' })
      execFileSync('ip', ['netns', 'del', n], { stdio: 'pipe' })
      return null
    }),
  tool: (cmd: string) => probe(`tool:${cmd}`, () => (which(cmd) ? null : `${cmd} not installed`)),
  docker: () =>
    probe('docker', () => {
      if (process.getuid?.() !== 0) return 'dockerd needs root'
      if (!which('dockerd') || !which('docker')) return 'docker.io not installed'
      if (!existsSync('/bin/busybox')) return 'busybox-static not installed'
      return null
    }),
  chromium: () => probe('chromium', () => (existsSync('/usr/bin/chromium') ? null : '/usr/bin/chromium not installed')),
}

/**
 * Gate a test on capabilities. Returns true when the test may proceed. When something is missing:
 * under CI=true the test fails (CI must prove everything), elsewhere it skips with the reason.
 */
export function requires(t: T, ...reasons: (string | null)[]): boolean {
  const missing = reasons.filter((r): r is string => r !== null)
  if (missing.length === 0) return true
  const msg = `missing capability: ${missing.join('; ')}`
  if (process.env.CI === 'true') t.fail(`${msg} (CI=true: a missing capability is a failure)`)
  else t.skip(msg)
  return false
}
