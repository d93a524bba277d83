// `egress-guard apply --once`: load the blocklists, resolve blocked names at the upstream, write the
// kernel sets/rules and the hosts block once, print the report and exit. Also the shared setup
// (policy loading, upstreams, protected addresses) that `plan` reuses.
import { readFileSync } from 'node:fs'
import type { Command, CommandIO } from './types.js'
import { helpText, loadOptions, type Spec } from '../config.js'
import { errors, isEgError } from '../errors.js'
import { createLogger, type Logger } from '../log.js'
import { loadBlocklists } from '../policy/load.js'
import { buildPolicy } from '../policy/merge.js'
import { formatProblem } from '../policy/problems.js'
import { parseCidr } from '../policy/net.js'
import type { Policy, Problem } from '../policy/types.js'
import { parseUpstream, type Upstream } from '../resolve/dns-client.js'
import { nameserversFromResolvConf } from '../resolve/system-upstreams.js'
import { createAddressBook } from '../resolve/address-book.js'
import { domainsToResolve } from '../enforce/desired.js'
import { createEnforcer, type BackendKind } from '../enforce/factory.js'
import { createDryRunHostsFile } from '../enforce/dry-run.js'
import { createHostsFile, type HostsFile } from '../enforce/hosts-file.js'
import { createEnforcementController } from '../enforce/controller.js'
import { createApiClient } from '../client/api-client.js'
import type { Enforcer } from '../enforce/types.js'
import { controlPlane, serverTarget } from '../enforce/control-plane.js'
import { systemLookup, type Lookup } from '../agent/server-addresses.js'
import { parseResolvConf, readBridgeGateways } from '../up/environment.js'

/** Options shared by `plan` and `apply`. */
export const enforceSpec = {
  blocklists: { type: 'string', multiple: true, help: 'blocklist directory or file (repeatable; default ./blocklists)' },
  server: { type: 'string', help: 'get the policy from this egress-guard server instead of blocklist files' },
  'token-file': { type: 'string', help: 'file holding the token for --server' },
  upstream: { type: 'string', multiple: true, help: 'DNS upstream IP[:PORT] for resolving blocked names (repeatable; default: resolv.conf nameservers)' },
  protect: { type: 'string', multiple: true, help: 'address or CIDR never blocked because a blocked name resolved to it (repeatable)' },
  'hosts-file': { type: 'string', default: '/etc/hosts', help: 'hosts file holding the managed block' },
  'no-hosts': { type: 'boolean', help: 'leave the hosts file alone' },
  netns: { type: 'string', help: 'act inside this named network namespace' },
  'name-prefix': { type: 'string', help: 'prefix of the sets/chains/table (default egress-guard)' },
  'log-rejects': { type: 'boolean', help: 'log rejected packets (rate-limited)' },
  'dns-timeout': { type: 'string', help: 'per-attempt DNS timeout in ms (default 2000)' },
  'log-level': { type: 'string', default: 'fatal', help: 'pino log level on stderr (warnings and errors are printed in the report anyway)' },
} as const satisfies Spec

const spec = {
  once: { type: 'boolean', help: 'apply and exit (required: the continuous loop is `egress-guard agent`)' },
  backend: { type: 'string', default: 'iptables', help: 'iptables | nftables | dry-run' },
  ...enforceSpec,
} as const satisfies Spec

const USAGE = `usage: egress-guard apply --once [--blocklists DIR | --server URL --token-file F] [--backend iptables|nftables|dry-run] [--netns NAME]
                          [--hosts-file PATH | --no-hosts] [--upstream IP[:PORT]...] [--protect CIDR...]

Loads the blocklists, resolves blocked names at the upstream (never through the hosts file), makes the
kernel sets and rules and the managed hosts block match, prints what changed and exits. A second run
with the same input changes nothing. Invalid lines are reported and skipped; an unreadable blocklist
file stops the run before anything is changed.`

export type EnforceOptions = { readonly [K in keyof typeof enforceSpec]: (typeof enforceSpec)[K]['type'] extends 'boolean' ? boolean : (typeof enforceSpec)[K] extends { multiple: true } ? readonly string[] : string | undefined }

export interface LoadedPolicy {
  policy: Policy
  /** Per-line problems: reported, the lines skipped. */
  problems: Problem[]
}

/**
 * Load and merge the blocklists. A file-level problem (missing, unreadable, not text) is fatal: an
 * apply from a partial directory would silently unblock everything in the missing file.
 */
export async function loadPolicy(paths: readonly string[]): Promise<LoadedPolicy> {
  const loaded = await loadBlocklists(paths.length > 0 ? paths : ['blocklists'])
  const fatal = loaded.problems.filter((p) => p.line === 0 && p.severity === 'error')
  if (fatal.length > 0) throw errors.fileUnreadable(`cannot load the blocklists, nothing changed:\n  ${fatal.map(formatProblem).join('\n  ')}`)
  return { policy: buildPolicy(loaded.entries), problems: loaded.problems }
}

/** The policy the server distributes now (one plain GET, no long-poll). Any failure changes nothing. */
export async function fetchPolicy(url: string, tokenFile: string | undefined): Promise<LoadedPolicy> {
  if (!tokenFile) throw errors.usage('--server needs --token-file')
  let token: string
  try {
    token = readFileSync(tokenFile, 'utf8').trim()
  } catch (e) {
    throw errors.config(`--token-file ${tokenFile}: ${(e as Error).message}`)
  }
  if (!token) throw errors.config(`--token-file ${tokenFile}: empty`)
  let r
  try {
    r = await createApiClient({ url, token }).getPolicy()
  } catch (e) {
    if (isEgError(e)) throw errors.upstream(`cannot get the policy from ${url}, nothing changed: ${e.message}`)
    throw errors.upstream(`cannot get the policy from ${url}, nothing changed: ${(e as Error).message}`)
  }
  if (r.status !== 200 || !r.policy) throw errors.upstream(`${url}: no full policy in the answer (status ${r.status}), nothing changed`)
  const { version, etag, generatedAt, entries } = r.policy
  return { policy: { version, etag, generatedAt, entries }, problems: [] }
}

/** --upstream values, else the resolv.conf nameservers. Coded error for a bad value. */
export function upstreamsFrom(list: readonly string[], resolvConf = '/etc/resolv.conf'): { upstreams: Upstream[]; fromSystem: boolean } {
  if (list.length > 0) {
    return {
      upstreams: list.map((u) => {
        const p = parseUpstream(u)
        if (!p) throw errors.usage(`--upstream must be IP[:PORT] or [IPv6]:PORT, got ${JSON.stringify(u)}`)
        return p
      }),
      fromSystem: false,
    }
  }
  let text = ''
  try {
    text = readFileSync(resolvConf, 'utf8')
  } catch {
    /* no resolv.conf: no default */
  }
  return { upstreams: nameserversFromResolvConf(text), fromSystem: true }
}

function readResolvConf(): string {
  try {
    return readFileSync('/etc/resolv.conf', 'utf8')
  } catch {
    return ''
  }
}

/** --protect values, validated and canonical. */
export function protectList(list: readonly string[]): string[] {
  return list.map((c) => {
    const r = parseCidr(c)
    if (!r.ok) throw errors.usage(`--protect: ${r.message}`)
    return r.canonical
  })
}

/**
 * The policy server's addresses, as the HTTP client that fetches the policy reaches them (its literal
 * address, or its host name resolved like fetch resolves it). Best effort: no answer, no address.
 */
export async function serverAddresses(url: string, lookup: Lookup = systemLookup): Promise<string[]> {
  const target = serverTarget(url)
  if (target.ip) return [target.ip]
  try {
    return (await lookup(target.host)).filter((a) => a !== '0.0.0.0' && a !== '::')
  } catch {
    return []
  }
}

/** Everything plan and apply need to compute the desired state. */
export async function prepare(o: EnforceOptions, io: CommandIO, log: Logger) {
  if (o.server && o.blocklists.length > 0) throw errors.usage('give --server or --blocklists, not both')
  const { policy, problems } = o.server ? await fetchPolicy(o.server, o['token-file']) : await loadPolicy(o.blocklists)
  for (const p of problems) io.stderr(`${p.severity === 'error' ? 'skipped' : 'warning'}: ${formatProblem(p)}\n`)
  const { upstreams, fromSystem } = upstreamsFrom(o.upstream)
  const domains = domainsToResolve(policy)
  if (domains.length > 0 && upstreams.length === 0) {
    throw errors.config('the policy blocks domain names but no DNS upstream is known: pass --upstream IP[:PORT]')
  }
  if (fromSystem && domains.length > 0 && upstreams.some((u) => u.address.startsWith('127.') || u.address === '::1')) {
    // A local stub (systemd-resolved, dnsmasq) may answer from the hosts file we manage: 0.0.0.0.
    io.stderr(`warning: resolving at ${upstreams.map((u) => u.address).join(', ')} from /etc/resolv.conf; a local stub resolver may answer from the hosts file: pass --upstream\n`)
  }
  const timeoutMs = o['dns-timeout'] !== undefined ? Number(o['dns-timeout']) : undefined
  if (timeoutMs !== undefined && !(Number.isInteger(timeoutMs) && timeoutMs > 0 && timeoutMs <= 60_000)) throw errors.usage('--dns-timeout must be milliseconds between 1 and 60000')
  // One-shot runs resolve once: TTLs only schedule re-resolution, which the agent does.
  const book = createAddressBook({ upstreams, minTtlSec: 30, maxTtlSec: 3600, graceSec: 3600, keepAnswers: 4, ...(timeoutMs ? { timeoutMs } : {}) })
  // The same control plane as the agent's (control-plane.ts): the server, the upstreams and Docker's
  // bridges are never blocked because a name resolved to them, and the exempt set keeps the server
  // and the upstreams reachable whatever the policy lists.
  const cp = controlPlane({
    ...(o.server ? { server: { addresses: await serverAddresses(o.server), port: serverTarget(o.server).port } } : {}),
    upstreams,
    // A server known by name is found through the system resolver: its nameservers are control plane too.
    resolvers: o.server && !serverTarget(o.server).ip ? parseResolvConf(readResolvConf()) : [],
    bridges: await readBridgeGateways(o.netns),
    protect: protectList(o.protect),
  })
  log.debug({ domains: domains.length, upstreams }, 'prepared')
  return { policy, problems, upstreams, book, protect: cp.protect, exempt: cp.exempt, domains }
}

function backendKind(v: string | undefined, allowed: readonly string[]): BackendKind {
  if (!v || !allowed.includes(v)) throw errors.usage(`--backend must be one of ${allowed.join(', ')}; got ${JSON.stringify(v)}`)
  return v as BackendKind
}

export function makeEnforcer(kind: BackendKind, o: EnforceOptions, log: Logger, print: (l: string) => void): Enforcer {
  const common = { ...(o.netns ? { netns: o.netns } : {}), ...(o['name-prefix'] ? { namePrefix: o['name-prefix'] } : {}), log: o['log-rejects'], logger: log }
  return createEnforcer(kind, { ...common, print })
}

/** A missing firewall tool gets a message saying what to install, and exit 1. */
export function explainMissingTool(e: unknown, kind: BackendKind): never {
  if (isEgError(e) && e.code === 'EG_MISSING_TOOL') {
    const pkgs = kind === 'nftables' ? 'nftables' : 'iptables ipset'
    throw errors.missingTool(`${e.message}: the ${kind} backend needs ${pkgs} (apt-get install ${pkgs}), or use --backend ${kind === 'nftables' ? 'iptables' : 'nftables'} / dry-run`)
  }
  throw e
}

const command: Command = {
  summary: 'apply the blocklists to the kernel and the hosts file once, print what changed, exit',
  async run(argv, io) {
    const { options: o, positionals } = loadOptions(argv, spec, { env: io.env, section: 'apply', allowPositionals: false })
    if (o.help) {
      io.stdout(helpText(USAGE, spec))
      return 0
    }
    if (!o.once) throw errors.usage('apply needs --once (continuous enforcement is `egress-guard agent`)')
    void positionals
    const kind = backendKind(o.backend, ['iptables', 'nftables', 'dry-run'])
    const log = createLogger({ level: o['log-level'] ?? 'fatal' })
    const printed: string[] = []
    const print = (l: string): void => void printed.push(l)
    const prep = await prepare(o, io, log)
    const enforcer = makeEnforcer(kind, o, log, print)
    let hosts: HostsFile | undefined
    if (!o['no-hosts']) {
      const real = createHostsFile(o['hosts-file'] ?? '/etc/hosts')
      // dry-run writes nothing anywhere, the hosts file included: it prints the names instead.
      hosts = kind === 'dry-run' ? createDryRunHostsFile(real, print) : real
    }
    const ctl = createEnforcementController({ enforcer, ...(hosts ? { hosts } : {}), book: prep.book, protect: prep.protect, exempt: prep.exempt, log })
    let result
    try {
      result = await ctl.setPolicy(prep.policy)
    } catch (e) {
      explainMissingTool(e, kind)
    }
    const { report, warnings } = result
    if (o.json) {
      io.stdout(JSON.stringify({ version: prep.policy.version, etag: prep.policy.etag, report, hosts: result.hosts ?? null, warnings, problems: prep.problems, stats: ctl.stats().entries, ...(kind === 'dry-run' ? { dryRun: printed } : {}) }) + '\n')
      return 0
    }
    let out = ''
    for (const l of printed) out += `would: ${l}\n`
    const st = ctl.stats().entries
    const verb = kind === 'dry-run' ? 'would apply' : 'applied'
    out += `${verb} policy ${prep.policy.etag.slice(0, 12)} (${prep.policy.entries.length} entries, ${prep.domains.length} names resolved) with ${report.backend} in ${Math.round(report.ms)} ms\n`
    out += `kernel: ${report.changed ? `changed (+${report.added} -${report.removed})` : 'unchanged'}; sets block ${st.block4}+${st.block6}, alert ${st.alert4}+${st.alert6}, allow ${st.allow4}+${st.allow6} (IPv4+IPv6)\n`
    for (const a of report.actions) out += `  ${a}\n`
    if (result.hosts && hosts) out += `hosts file ${hosts.path}: ${result.hosts.changed ? (kind === 'dry-run' ? 'would update' : 'updated') : 'unchanged'} (${result.hosts.names} names)\n`
    else out += 'hosts file: left alone (--no-hosts)\n'
    for (const w of warnings) out += `warning: ${w}\n`
    io.stdout(out)
    return 0
  },
}
export default command
