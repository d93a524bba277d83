// `egress-guard uninstall`: removes exactly what egress-guard made (its ipsets, EGRESS-GUARD chains
// and their jumps, the nftables table, the hosts-file block) and leaves every other rule alone.
import type { Command } from './types.js'
import { helpText, loadOptions, type Spec } from '../config.js'
import { errors, isEgError } from '../errors.js'
import { createEnforcer } from '../enforce/factory.js'
import { createContainerEnforcer } from '../enforce/container-factory.js'
import { createHostsFile } from '../enforce/hosts-file.js'

const spec = {
  backend: { type: 'string', default: 'all', help: 'iptables, nftables or all' },
  netns: { type: 'string', help: 'act inside this named network namespace' },
  'hosts-file': { type: 'string', default: '/etc/hosts', help: 'hosts file whose managed block is removed' },
  'no-hosts-file': { type: 'boolean', help: 'leave the hosts file alone' },
  'name-prefix': { type: 'string', help: 'prefix of the sets/chains/table (default egress-guard)' },
} as const satisfies Spec

const USAGE = `usage: egress-guard uninstall [--backend iptables|nftables|all] [--netns NAME] [--hosts-file PATH | --no-hosts-file]

Removes every rule, set, chain and table egress-guard made (the container-egress ones included), and its
hosts-file block; nothing else.`

interface Step {
  what: string
  status: 'removed' | 'skipped' | 'failed'
  detail?: string
}

/**
 * The container-egress seam (issue 16) of one backend: its own chains, sets and table, removed
 * before the fleet's (its jumps sit beside the fleet chain's). A prefix too long for its set names
 * means it was never installed.
 */
async function removeContainerSeam(kind: 'iptables' | 'nftables', common: { netns?: string; namePrefix?: string }, all: boolean, steps: Step[]): Promise<void> {
  const what = `${kind} containers`
  let ce
  try {
    ce = createContainerEnforcer(kind, common)
  } catch (err) {
    steps.push({ what, status: 'skipped', detail: (err as Error).message })
    return
  }
  try {
    await ce.remove()
    steps.push({ what, status: 'removed' })
  } catch (err) {
    if (all && isEgError(err) && err.code === 'EG_MISSING_TOOL') steps.push({ what, status: 'skipped', detail: err.message })
    else steps.push({ what, status: 'failed', detail: (err as Error).message })
  }
}

const command: Command = {
  summary: 'remove every rule, set and hosts-file block egress-guard made',
  async run(argv, io) {
    const { options: o } = loadOptions(argv, spec, { env: io.env, section: 'uninstall', allowPositionals: false })
    if (o.help) {
      io.stdout(helpText(USAGE, spec))
      return 0
    }
    const backend = o.backend ?? 'all'
    if (!['iptables', 'nftables', 'all'].includes(backend)) throw errors.usage(`--backend must be iptables, nftables or all; got ${JSON.stringify(backend)}`)
    if (o.netns !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(o.netns)) throw errors.usage(`invalid network namespace name: ${JSON.stringify(o.netns)}`)
    const kinds = backend === 'all' ? (['iptables', 'nftables'] as const) : ([backend] as const)
    const common = { ...(o.netns ? { netns: o.netns } : {}), ...(o['name-prefix'] ? { namePrefix: o['name-prefix'] } : {}) }
    // Validate everything before removing anything: a bad prefix or netns name changes nothing.
    const enforcers = kinds.map((k) => [k, createEnforcer(k as 'iptables' | 'nftables', common)] as const)
    const steps: Step[] = []
    for (const [kind, e] of enforcers) {
      await removeContainerSeam(kind as 'iptables' | 'nftables', common, backend === 'all', steps)
      try {
        await e.remove()
        steps.push({ what: kind, status: 'removed' })
      } catch (err) {
        // With --backend all, a backend whose tools are not installed has nothing to remove.
        if (backend === 'all' && isEgError(err) && err.code === 'EG_MISSING_TOOL') steps.push({ what: kind, status: 'skipped', detail: err.message })
        else steps.push({ what: kind, status: 'failed', detail: (err as Error).message })
      }
    }
    if (!o['no-hosts-file']) {
      const path = o['hosts-file'] ?? '/etc/hosts'
      try {
        await createHostsFile(path).remove()
        steps.push({ what: `hosts file ${path}`, status: 'removed' })
      } catch (err) {
        steps.push({ what: `hosts file ${path}`, status: 'failed', detail: (err as Error).message })
      }
    }
    const failed = steps.some((s) => s.status === 'failed')
    if (o.json) io.stdout(JSON.stringify({ ok: !failed, steps }, null, 2) + '\n')
    else for (const s of steps) (s.status === 'failed' ? io.stderr : io.stdout)(`${s.what}: ${s.status}${s.detail ? ` (${s.detail})` : ''}\n`)
    return failed ? 1 : 0
  },
}
export default command
