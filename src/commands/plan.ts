// `egress-guard plan`: what an apply would change in the kernel and the hosts file, computed from the
// blocklists and fresh DNS answers and compared with what is there now; nothing is written.
import type { Command } from './types.js'
import { helpText, loadOptions, type Spec } from '../config.js'
import { errors, isEgError } from '../errors.js'
import { createLogger, silentLogger } from '../log.js'
import { run } from '../enforce/exec.js'
import { desiredState, hostsFileNames } from '../enforce/desired.js'
import { createHostsFile } from '../enforce/hosts-file.js'
import { createEnforcer } from '../enforce/factory.js'
import { ownedSetNames, parseIpsetSave, setName, SET_KEYS } from '../enforce/ipset-script.js'
import { resolveNames } from '../enforce/iptables.js'
import { parseNftJson, planNft, tableName } from '../enforce/nft-script.js'
import type { DesiredState } from '../enforce/types.js'
import { enforceSpec, prepare, type EnforceOptions } from './apply.js'

const spec = {
  backend: { type: 'string', default: 'iptables', help: 'iptables | nftables: whose live state to compare with' },
  ...enforceSpec,
} as const satisfies Spec

const USAGE = `usage: egress-guard plan [--blocklists DIR | --server URL --token-file F] [--backend iptables|nftables] [--upstream IP[:PORT]...] [--json]

Prints the kernel and hosts-file changes \`egress-guard apply --once\` would make, doing nothing. The
kernel is read (ipset save / nft list, read-only) to show the difference; when it cannot be read (not
root, tool missing) everything an apply from scratch would write is shown instead.`

interface Live {
  /** Members now in our sets; undefined when unreadable or not comparable member by member. */
  state?: DesiredState
  /** Chain/jump/table changes an apply would make (from a read-only verify or nft plan). */
  ruleActions: string[]
  /** True when ruleActions already cover the sets (nftables' own planner): no member lines. */
  planned?: boolean
  note?: string
}

function emptyState(): DesiredState {
  return { block: { v4: [], v6: [] }, alert: { v4: [], v6: [] }, allow: { v4: [], v6: [] }, exempt: { v4: [], v6: [] }, version: 0 }
}

/** iptables: members from `ipset save`, rule drift from the backend's verify() (read-only before any apply). */
async function readIptables(o: EnforceOptions): Promise<Live> {
  const { prefix } = resolveNames(o['name-prefix'])
  const saved = await run('ipset', ['save'], { ...(o.netns ? { netns: o.netns } : {}), reject: false })
  if (saved.exitCode !== 0) throw new Error(`ipset save: ${saved.stderr.trim() || `exit ${saved.exitCode}`}`)
  const sets = parseIpsetSave(saved.stdout, new Set(ownedSetNames(prefix)))
  const state = emptyState()
  for (const k of SET_KEYS) {
    const role = k.slice(0, -1) as 'block' | 'alert' | 'allow' | 'ctl'
    const into = role === 'ctl' ? state.exempt! : state[role]
    into[k.endsWith('4') ? 'v4' : 'v6'] = [...(sets.get(setName(prefix, k))?.members ?? [])]
  }
  const enforcer = createEnforcer('iptables', { ...(o.netns ? { netns: o.netns } : {}), ...(o['name-prefix'] ? { namePrefix: o['name-prefix'] } : {}), logger: silentLogger })
  const drift = await enforcer.verify()
  return { state, ruleActions: drift.map((d) => `fix ${d.kind}: ${d.detail}`) }
}

/** nftables: the backend's own planner on the live table (sets compare as merged intervals there). */
async function readNftables(o: EnforceOptions, desired: DesiredState): Promise<Live> {
  const prefix = o['name-prefix'] ?? 'egress-guard'
  const table = tableName(prefix)
  const r = await run('nft', ['-j', 'list', 'table', 'inet', table], { ...(o.netns ? { netns: o.netns } : {}), reject: false })
  let text = r.stdout
  if (r.exitCode !== 0) {
    if (!/No such file or directory/i.test(r.stderr)) throw new Error(`nft list table: ${r.stderr.trim() || `exit ${r.exitCode}`}`)
    text = ''
  }
  const plan = planNft(table, parseNftJson(text), desired, o['log-rejects'], prefix)
  // The planner's set lines carry the counts; members are not listed one by one for nftables.
  return { ruleActions: plan.actions, planned: true }
}

const command: Command = {
  summary: 'show the kernel and hosts-file changes an apply would make; change nothing',
  async run(argv, io) {
    const { options: o } = loadOptions(argv, spec, { env: io.env, section: 'plan', allowPositionals: false })
    if (o.help) {
      io.stdout(helpText(USAGE, spec))
      return 0
    }
    const kind = o.backend
    if (kind !== 'iptables' && kind !== 'nftables') throw errors.usage(`--backend must be iptables or nftables; got ${JSON.stringify(kind)}`)
    const log = createLogger({ level: o['log-level'] ?? 'fatal' })
    const prep = await prepare(o, io, log)
    const resolved = await prep.book.refresh(prep.domains)
    const computed = desiredState(prep.policy, (d) => prep.book.addresses(d), { protect: prep.protect, exempt: prep.exempt })
    const warnings = [...resolved.errors.map((e) => `${e.domain}: could not resolve: ${e.message}`), ...computed.warnings]

    let live: Live
    try {
      live = kind === 'iptables' ? await readIptables(o) : await readNftables(o, computed.state)
    } catch (e) {
      const why = isEgError(e) && e.code === 'EG_MISSING_TOOL' ? e.message : (e as Error).message
      live = { ruleActions: [], note: `could not read the live kernel state (${why.split('\n')[0]}); showing everything an apply from scratch would write` }
    }
    const memberLines: string[] = []
    const dry = createEnforcer('dry-run', {
      print: (l) => void memberLines.push(l),
      ...(live.state ? { current: live.state } : {}),
      ...(o['name-prefix'] ? { namePrefix: o['name-prefix'] } : {}),
    })
    // Without a readable live state the dry-run prints its creation lines too; with one, only members.
    if (live.state) await dry.init()
    const report = await dry.apply(computed.state)
    const kernelLines = live.planned ? [] : live.state ? memberLines : memberLines.filter((l) => !l.startsWith('create') && !l.startsWith('insert'))

    let hosts: { path: string; add: string[]; remove: string[] } | undefined
    if (!o['no-hosts']) {
      const h = createHostsFile(o['hosts-file'] ?? '/etc/hosts')
      hosts = { path: h.path, ...(await h.plan(hostsFileNames(prep.policy))) }
    }
    const changes = (live.state ? report.added + report.removed : kernelLines.length) + live.ruleActions.length + (hosts ? hosts.add.length + hosts.remove.length : 0)

    if (o.json) {
      io.stdout(JSON.stringify({
        version: prep.policy.version, etag: prep.policy.etag, backend: kind, comparedWithLive: live.state !== undefined || live.planned === true,
        kernel: { members: kernelLines, rules: live.ruleActions, added: live.state ? report.added : undefined, removed: live.state ? report.removed : undefined },
        desired: computed.state, hosts: hosts ?? null, warnings, problems: prep.problems, changes, ...(live.note ? { note: live.note } : {}),
      }) + '\n')
      return 0
    }
    let out = `plan for policy ${prep.policy.etag.slice(0, 12)} (${prep.policy.entries.length} entries, ${prep.domains.length} names resolved), backend ${kind}${o.netns ? ` in netns ${o.netns}` : ''}\n`
    if (live.note) out += `note: ${live.note}\n`
    out += `kernel${live.state ? ` (compared with the live sets: +${report.added} -${report.removed})` : ''}:\n`
    for (const l of live.ruleActions) out += `  ${l}\n`
    for (const l of kernelLines) out += `  ${l}\n`
    if (live.ruleActions.length + kernelLines.length === 0) out += '  no changes\n'
    if (hosts) {
      out += `hosts file ${hosts.path}:\n`
      for (const n of hosts.add) out += `  add 0.0.0.0 ${n} / :: ${n}\n`
      for (const n of hosts.remove) out += `  remove ${n}\n`
      if (hosts.add.length + hosts.remove.length === 0) out += '  no changes\n'
    }
    for (const w of warnings) out += `warning: ${w}\n`
    out += changes === 0 ? 'nothing to do\n' : `${changes} change${changes === 1 ? '' : 's'}\n`
    io.stdout(out)
    return 0
  },
}
export default command
