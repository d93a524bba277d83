// Run the built CLI (dist/cli.js, built by `npm test` before tap starts) as a real process.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url))

export interface CliResult {
  code: number
  stdout: string
  stderr: string
}

export function runCli(args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string; netns?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  const [file, argv] = opts.netns ? ['ip', ['netns', 'exec', opts.netns, process.execPath, CLI, ...args]] : [process.execPath, [CLI, ...args]]
  return new Promise((resolve, reject) => {
    const child = spawn(file as string, argv as string[], { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code: code ?? -1, stdout, stderr })
    })
    child.stdin.end(opts.input ?? '')
  })
}
