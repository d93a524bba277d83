// `egress-guard doctor`: checks this host's prerequisites (privileges, firewall tools and kernel
// support, Docker's DOCKER-USER chain), each with how to fix it; exit 1 when a required check fails.
import type { Command } from './types.js'
import { helpText, loadOptions, type Spec } from '../config.js'
import { defaultContext, runChecks } from '../doctor/checks.js'

const spec = {
  netns: { type: 'string', help: 'check inside this named network namespace' },
} as const satisfies Spec

const USAGE = `usage: egress-guard doctor [--netns NAME] [--json]

Checks what egress-guard needs on this host; prints each check with how to fix it.
Exit 0 when every required check passes, 1 otherwise.`

const MARK = { ok: '[ ok ]', warn: '[warn]', fail: '[FAIL]', skip: '[skip]' } as const

const command: Command = {
  summary: 'prerequisites on this host, each with how to fix it',
  async run(argv, io) {
    const { options } = loadOptions(argv, spec, { env: io.env, section: 'doctor', allowPositionals: false })
    if (options.help) {
      io.stdout(helpText(USAGE, spec))
      return 0
    }
    const results = await runChecks(defaultContext(options.netns))
    const ok = results.every((r) => !(r.required && r.status === 'fail'))
    if (options.json) io.stdout(JSON.stringify({ ok, checks: results }, null, 2) + '\n')
    else {
      for (const r of results) {
        io.stdout(`${MARK[r.status]} ${r.name}: ${r.detail}\n`)
        if (r.fix && (r.status === 'warn' || r.status === 'fail')) io.stdout(`       fix: ${r.fix}\n`)
      }
      io.stdout(ok ? 'doctor: ready\n' : 'doctor: a required check failed\n')
    }
    return ok ? 0 : 1
  },
}
export default command
