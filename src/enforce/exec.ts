// The ONLY place that spawns processes. Argument arrays, never a shell; input on stdin; optional netns.
// Nothing from a blocklist, an API body or a DNS packet can become shell syntax here because no shell runs.
import { execa, type Options } from 'execa'
import { errors } from '../errors.js'
import { spawn as spawnChild } from 'node:child_process'

export interface RunOptions {
  /** Text written to the child's stdin (for `ipset restore`, `iptables-restore`, `nft -f -`). */
  input?: string
  /** Run inside this named network namespace (`ip netns exec NAME ...`). */
  netns?: string
  /** Kill the child after this many milliseconds (default 60 s). */
  timeoutMs?: number
  /** When false, a non-zero exit is returned rather than thrown. Default true. */
  reject?: boolean
  env?: Record<string, string>
  /**
   * Open file descriptors of ours the child gets as its fds 3, 4, ... (the same open file
   * descriptions, so `flock -x -n 3` locks ours: see store/dir-lock.ts).
   */
  fds?: readonly number[]
}

export interface RunResult {
  command: string
  exitCode: number
  stdout: string
  stderr: string
}

const SAFE_NETNS = /^[A-Za-z0-9_.-]{1,64}$/

/** Spawn `cmd args...` (optionally inside a netns) and collect its output. */
export async function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  let file = cmd
  let argv = [...args]
  if (opts.netns !== undefined) {
    if (!SAFE_NETNS.test(opts.netns)) throw errors.usage(`invalid network namespace name: ${JSON.stringify(opts.netns)}`)
    file = 'ip'
    argv = ['netns', 'exec', opts.netns, cmd, ...args]
  }
  const command = [file, ...argv].join(' ')
  try {
    const r = await execa(file, argv, {
      input: opts.input ?? '',
      timeout: opts.timeoutMs ?? 60_000,
      reject: false,
      stripFinalNewline: false,
      maxBuffer: 256 * 1024 * 1024,
      env: opts.env,
      extendEnv: true,
      // execa hands any descriptor number to child_process; its types accept only literal ones.
      ...(opts.fds?.length ? { stdio: ['pipe', 'pipe', 'pipe', ...opts.fds] as unknown as Options['stdio'] } : {}),
    })
    if (r.failed && r.exitCode === undefined) {
      // Spawn failure (ENOENT) or timeout: never a plain exit code.
      const why = r.timedOut ? `timed out after ${opts.timeoutMs ?? 60_000} ms` : (r as { code?: string }).code === 'ENOENT' ? 'not found' : r.shortMessage
      if ((r as { code?: string }).code === 'ENOENT') throw errors.missingTool(`${file}: command not found`)
      throw errors.exec(`${command.slice(0, 200)}: ${why}`)
    }
    const result: RunResult = { command, exitCode: r.exitCode ?? -1, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') }
    if (result.exitCode !== 0 && opts.reject !== false) {
      throw errors.exec(`${command.slice(0, 200)} exited ${result.exitCode}: ${result.stderr.trim().slice(0, 2000)}`, result)
    }
    return result
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') throw errors.missingTool(`${file}: command not found`)
    throw e
  }
}

/** True when `cmd` can be spawned (used by `doctor`). */
export async function hasCommand(cmd: string, versionArgs: readonly string[] = ['--version']): Promise<boolean> {
  try {
    await run(cmd, versionArgs, { reject: false, timeoutMs: 10_000 })
    return true
  } catch {
    return false
  }
}

/** A long-lived child fed on stdin (the learned-pair writer); see spawnLong. */
export interface LongProcess {
  readonly pid: number | undefined
  readonly command: string
  write(text: string): boolean
  /** Every stdout/stderr chunk as text, in arrival order per stream. */
  onStdout(fn: (text: string) => void): void
  onStderr(fn: (text: string) => void): void
  /** Called once when the child exits or fails to spawn (code null: killed or never started). */
  onExit(fn: (code: number | null, why: string) => void): void
  /** Close stdin (the child exits when it has read everything) and wait for the exit. */
  end(): Promise<void>
  /** SIGKILL this child only. */
  kill(): void
}

/**
 * Spawn a long-lived `cmd args...` (optionally inside a netns) with piped stdio: same rules as run()
 * (argument arrays, no shell, validated netns name). The caller owns the protocol on stdin/stdout.
 */
export function spawnLong(cmd: string, args: readonly string[], opts: { netns?: string } = {}): LongProcess {
  let file = cmd
  let argv = [...args]
  if (opts.netns !== undefined) {
    if (!SAFE_NETNS.test(opts.netns)) throw errors.usage(`invalid network namespace name: ${JSON.stringify(opts.netns)}`)
    file = 'ip'
    argv = ['netns', 'exec', opts.netns, cmd, ...args]
  }
  const command = [file, ...argv].join(' ')
  const child = spawnChild(file, argv, { stdio: ['pipe', 'pipe', 'pipe'] })
  child.stdout!.setEncoding('utf8')
  child.stderr!.setEncoding('utf8')
  // A write after the child died raises EPIPE on stdin: the exit handler reports the death instead.
  child.stdin!.on('error', () => {})
  let exited = false
  const exitFns: ((code: number | null, why: string) => void)[] = []
  const done = new Promise<void>((resolve) => {
    const fire = (code: number | null, why: string): void => {
      if (exited) return
      exited = true
      for (const f of exitFns) f(code, why)
      resolve()
    }
    child.on('error', (e: NodeJS.ErrnoException) => fire(null, e.code === 'ENOENT' ? `${file}: command not found` : e.message))
    // 'close', not 'exit': it comes after the child's stdout was read to the end, so an ack the child
    // printed just before exiting is seen before the exit.
    child.on('close', (code, signal) => fire(code, signal ? `killed by ${signal}` : `exited ${code}`))
  })
  return {
    pid: child.pid,
    command,
    write: (text) => !exited && child.stdin!.write(text),
    onStdout: (fn) => void child.stdout!.on('data', fn),
    onStderr: (fn) => void child.stderr!.on('data', fn),
    onExit: (fn) => void exitFns.push(fn),
    async end() {
      if (!exited) child.stdin!.end()
      await done
    },
    kill() {
      if (!exited) child.kill('SIGKILL')
    },
  }
}
