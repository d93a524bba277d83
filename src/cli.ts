#!/usr/bin/env node
// Entry point: maps `egress-guard <command>` to a command module, installs the signal handlers
// (the only place that does), and turns coded errors into a message and an exit code.
import { EventEmitter } from 'node:events'
import { isEgError } from './errors.js'
import { terminalSafe } from './server/ui/printable.js'
import type { Command, CommandIO } from './commands/types.js'

// One line per command; modules load lazily so `lint` does not pay for fastify.
const commands: Record<string, () => Promise<{ default: Command }>> = {
  lint: () => import('./commands/lint.js'),
  match: () => import('./commands/match.js'),
  plan: () => import('./commands/plan.js'),
  apply: () => import('./commands/apply.js'),
  uninstall: () => import('./commands/uninstall.js'),
  doctor: () => import('./commands/doctor.js'),
  sinkhole: () => import('./commands/sinkhole.js'),
  server: () => import('./commands/server.js'),
  agent: () => import('./commands/agent.js'),
  up: () => import('./commands/up.js'),
  block: () => import('./commands/block.js'),
  hosts: () => import('./commands/hosts.js'),
  hits: () => import('./commands/hits.js'),
  token: () => import('./commands/token.js'),
  profile: () => import('./commands/profile.js'),
  quarantine: () => import('./commands/quarantine.js'),
}

function usage(): string {
  return [
    'usage: egress-guard <command> [options]   (egress-guard <command> --help for its options; --version)',
    '',
    'commands: ' + Object.keys(commands).sort().join(', '),
    '',
  ].join('\n')
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === '--version' || name === '-V' || name === 'version') {
    process.stdout.write(`egress-guard ${(await import('./version.js')).VERSION}\n`)
    return 0
  }
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage())
    return name ? 0 : 2
  }
  const load = commands[name]
  if (!load) {
    process.stderr.write(`egress-guard: unknown command ${terminalSafe(JSON.stringify(name))}\n` + usage())
    return 2
  }
  const ac = new AbortController()
  const hup = new EventEmitter()
  const onSignal = (): void => ac.abort()
  const onHup = (): void => void hup.emit('hup')
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  process.on('SIGHUP', onHup)
  // Commands print values from servers, DNS packets and blocklist files: whatever a command forgot to
  // escape, no control character reaches the operator's terminal (JSON output stays valid JSON).
  const io: CommandIO = {
    stdout: (t) => void process.stdout.write(terminalSafe(t)),
    stderr: (t) => void process.stderr.write(terminalSafe(t)),
    env: process.env,
    signal: ac.signal,
    onReload: (cb) => {
      hup.on('hup', cb)
      return () => void hup.off('hup', cb)
    },
  }
  try {
    const cmd = (await load()).default
    return await cmd.run(rest, io)
  } catch (e) {
    if (isEgError(e)) {
      process.stderr.write(`egress-guard ${name}: ${terminalSafe(e.message)}\n`)
      return e.code === 'EG_USAGE' || e.code === 'EG_CONFIG' ? 2 : 1
    }
    process.stderr.write(`egress-guard ${name}: internal error: ${terminalSafe((e as Error)?.stack ?? String(e))}\n`)
    return 1
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    process.off('SIGHUP', onHup)
  }
}

// Flush stdout before exiting so piped JSON is never cut short.
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (e: unknown) => {
    process.stderr.write(String(e) + '\n')
    process.exitCode = 1
  },
)
