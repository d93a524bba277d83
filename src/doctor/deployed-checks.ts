// `doctor`'s end-to-end checks of a deployed host: the server answers, this host's token is accepted,
// the rules are in the kernel, the sinkhole answers a blocked name with the sinkhole answer, and Docker
// sends containers to it. Each is one small function in the same Check shape as the prerequisite
// checks; each is skipped when the option it needs was not given (e.g. no --server).
import dgram from 'node:dgram'
import { readFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import dnsPacket from 'dns-packet'
import type { Check, CheckContext, CheckResult } from './checks.js'
import { createApiClient, type ApiClient } from '../client/api-client.js'
import type { Entry } from '../policy/types.js'
import { isEgError } from '../errors.js'

/** What a deployed host is configured with (the agent's own option names; see `doctor --help`). */
export interface DeployedOptions {
  server?: string
  tokenFile?: string
  ca?: string
  backend?: string
  /** ADDR:PORT the sinkhole listens on (the agent's --sinkhole-listen). */
  sinkhole?: { address: string; port: number }
  /** Docker's daemon.json (default /etc/docker/daemon.json). */
  daemonJson?: string
  /** Chain/table prefix (default egress-guard). */
  namePrefix?: string
}

export type DeployedContext = CheckContext & {
  deployed: DeployedOptions
  /** Filled by the token check: the policy this host's token can read (a blocked name for the sinkhole probe). */
  policy?: { version: number; entries: Entry[] }
  client?: ApiClient
}

const first = (s: string): string => s.trim().split('\n')[0] ?? ''
const result = (name: string, status: CheckResult['status'], detail: string, fix?: string): CheckResult => ({ name, status, detail, ...(fix ? { fix } : {}), required: status === 'fail' })

async function readToken(path: string): Promise<string> {
  return (await readFile(path, 'utf8')).trim()
}

async function clientOf(ctx: DeployedContext): Promise<ApiClient | undefined> {
  const d = ctx.deployed
  if (!d.server || !d.tokenFile) return undefined
  if (!ctx.client) {
    ctx.client = createApiClient({ url: d.server, token: await readToken(d.tokenFile), timeoutMs: 5000, ...(d.ca ? { ca: await readFile(d.ca, 'utf8') } : {}) })
  }
  return ctx.client
}

export const serverReachable: Check = async (c) => {
  const ctx = c as DeployedContext
  const name = 'server reachable'
  const d = ctx.deployed
  if (!d.server) return result(name, 'skip', 'no --server given (an agent reading only --blocklists has none)')
  try {
    const res = await fetch(new URL('/healthz', d.server), { signal: AbortSignal.timeout(5000) })
    if (!res.ok) return result(name, 'fail', `GET /healthz answered ${res.status}`, 'check the server (systemctl status egress-guard-server; journalctl -u egress-guard-server)')
    return result(name, 'ok', `${d.server} answers`)
  } catch (e) {
    const why = (e as { cause?: Error }).cause?.message ?? (e as Error).message
    // A private CA: node's fetch cannot take it; the token check below uses the API client, which can.
    if (d.ca && /certificate|self.signed|issuer/i.test(why)) return result(name, 'skip', `TLS with a private CA: checked by the token check (${why})`)
    return result(name, 'fail', `${d.server}: ${why}`, 'start the server (systemctl start egress-guard-server), check --server and any firewall between this host and it')
  }
}

export const tokenValid: Check = async (c) => {
  const ctx = c as DeployedContext
  const name = 'token valid'
  const d = ctx.deployed
  if (!d.server) return result(name, 'skip', 'no --server given')
  if (!d.tokenFile) return result(name, 'fail', '--server without --token-file', 'give --token-file (the agent\'s token, e.g. /etc/egress-guard/agent.token)')
  if (ctx.results.get('server reachable')?.status === 'fail') return result(name, 'skip', 'server unreachable')
  let client: ApiClient | undefined
  try {
    client = await clientOf(ctx)
  } catch (e) {
    return result(name, 'fail', `${d.tokenFile}: ${(e as Error).message}`, 'the token file must be readable by root (mode 0600)')
  }
  try {
    const r = await client!.getPolicy()
    if (r.status === 200 && r.policy) ctx.policy = { version: r.policy.version, entries: r.policy.entries }
    return result(name, 'ok', `GET /v1/policy accepted the token (policy version ${ctx.policy?.version ?? '?'})`)
  } catch (e) {
    const msg = (e as Error).message
    const denied = /\b40[13]\b|unauthori|forbidden|token/i.test(msg)
    return result(
      name,
      'fail',
      first(msg),
      denied ? 'make a token for this host on the server: egress-guard token create --role agent --host HOST --out agent.token, then copy it to --token-file' : 'see the message; egress-guard doctor --server URL --token-file F',
    )
  }
}

/** The iptables chain and jumps, or the nft table, that `apply`/`agent` make. */
export const rulesPresent: Check = async (c) => {
  const ctx = c as DeployedContext
  const name = 'rules present'
  const backend = ctx.deployed.backend ?? 'iptables'
  const prefix = ctx.deployed.namePrefix ?? 'egress-guard'
  const fix = 'start the agent (systemctl start egress-guard-agent) or run egress-guard apply --once'
  const runq = (cmd: string, args: string[]) => ctx.run(cmd, args, { ...(ctx.netns ? { netns: ctx.netns } : {}), reject: false, timeoutMs: 15_000 })
  try {
    if (backend === 'nftables') {
      const table = prefix.replace(/-/g, '_')
      const r = await runq('nft', ['list', 'table', 'inet', table])
      if (r.exitCode !== 0) return result(name, 'fail', `nft table inet ${table} is missing`, fix)
      return result(name, 'ok', `nft table inet ${table} present`)
    }
    const chain = prefix.toUpperCase()
    const r = await runq('iptables', ['-S'])
    if (r.exitCode !== 0) return result(name, 'fail', first(r.stderr) || `iptables -S exited ${r.exitCode}`, 'run as root')
    const lines = r.stdout.split('\n')
    if (!lines.includes(`-N ${chain}`)) return result(name, 'fail', `chain ${chain} is missing`, fix)
    const jumps = lines.filter((l) => new RegExp(`^-A (OUTPUT|FORWARD|DOCKER-USER) -j ${chain}$`).test(l)).map((l) => l.split(' ')[1]!)
    const missing = ['OUTPUT', lines.includes('-N DOCKER-USER') ? 'DOCKER-USER' : 'FORWARD'].filter((h) => !jumps.includes(h))
    if (missing.length) return result(name, 'fail', `chain ${chain} present but no jump from ${missing.join(', ')}`, `${fix} (the agent repairs missing jumps within its --reconcile-interval)`)
    const rules = lines.filter((l) => l.startsWith(`-A ${chain} `)).length
    return result(name, 'ok', `chain ${chain} (${rules} rules), jumps from ${jumps.join(', ')}`)
  } catch (e) {
    if (isEgError(e) && e.code === 'EG_MISSING_TOOL') return result(name, 'fail', e.message, `apt-get install ${backend === 'nftables' ? 'nftables' : 'iptables ipset'}`)
    throw e
  }
}

/** One UDP query; undefined on timeout. */
export function queryDns(address: string, port: number, qname: string, timeoutMs = 2000): Promise<dnsPacket.Packet | undefined> {
  return new Promise((resolve) => {
    const s = dgram.createSocket(isIP(address) === 6 ? 'udp6' : 'udp4')
    const done = (p: dnsPacket.Packet | undefined): void => {
      clearTimeout(timer)
      s.close()
      resolve(p)
    }
    const timer = setTimeout(() => done(undefined), timeoutMs)
    s.on('error', () => done(undefined))
    s.on('message', (m) => {
      try {
        done(dnsPacket.decode(m))
      } catch {
        done(undefined)
      }
    })
    s.send(dnsPacket.encode({ type: 'query', id: 0x6567, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: qname, type: 'A', class: 'IN' }] }), port, address)
  })
}

/** A name the policy blocks (not an allow, not alert-only, not `*.` only), to ask the sinkhole for. */
export function blockedProbeName(entries: readonly Entry[]): string | undefined {
  const e = entries.find((x) => x.kind === 'domain' && !x.allow && x.mode === 'block' && !x.subdomainsOnly)
  return e?.value
}

export const sinkholeAnswering: Check = async (c) => {
  const ctx = c as DeployedContext
  const name = 'sinkhole answering'
  const s = ctx.deployed.sinkhole
  if (!s) return result(name, 'skip', 'no --sinkhole-listen given')
  const fix = `check the agent runs with --sinkhole-listen ${s.address}:${s.port} (journalctl -u egress-guard-agent)`
  const probe = ctx.policy ? blockedProbeName(ctx.policy.entries) : undefined
  const qname = probe ?? 'egress-guard-doctor.invalid'
  const p = await queryDns(s.address, s.port, qname)
  if (!p) return result(name, 'fail', `no answer from ${s.address}:${s.port} for ${qname}`, fix)
  // dns-packet decodes the rcode as a string (flag_qr packets) but its types do not declare it.
  const rcode = (p as { rcode?: string }).rcode
  if (!probe) return result(name, 'ok', `${s.address}:${s.port} answers (${rcode ?? 'NOERROR'}); no blocked name known to check the sinkhole answer (give --server and --token-file)`)
  const answers = (p.answers ?? []).filter((a) => a.type === 'A').map((a) => String((a as { data: unknown }).data))
  // The default sinkhole answer is 0.0.0.0; nxdomain/refused modes answer with that rcode instead.
  if (answers.includes('0.0.0.0') || rcode === 'NXDOMAIN' || rcode === 'REFUSED') {
    return result(name, 'ok', `${s.address}:${s.port}: blocked ${qname} -> ${answers.join(', ') || rcode}`)
  }
  return result(name, 'fail', `${s.address}:${s.port} answered ${qname} with ${answers.join(', ') || rcode || 'nothing'}, not the sinkhole answer`, 'the sinkhole has not got the policy yet, or another DNS server holds this address; check the agent log')
}

export const dockerUsesSinkhole: Check = async (c) => {
  const ctx = c as DeployedContext
  const name = 'Docker pointed at the sinkhole'
  const s = ctx.deployed.sinkhole
  const file = ctx.deployed.daemonJson ?? '/etc/docker/daemon.json'
  if (!s) return result(name, 'skip', 'no --sinkhole-listen given')
  // Containers cannot reach the host's loopback: such a sinkhole serves host processes only.
  if (/^127\.|^::1$/.test(s.address)) return result(name, 'skip', `the sinkhole is on loopback (${s.address}): it serves this host, not containers`)
  const fix = `add "dns": ["${s.address}"] to ${file} (see deploy/docker/daemon.json), then systemctl restart docker; or run containers with --dns ${s.address}`
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (e) {
    return result(name, 'warn', `${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, fix)
  }
  let dns: unknown
  try {
    dns = (JSON.parse(text) as { dns?: unknown }).dns
  } catch (e) {
    return result(name, 'warn', `${file}: invalid JSON (${(e as Error).message})`, fix)
  }
  if (Array.isArray(dns) && dns.includes(s.address)) {
    if (s.port !== 53) return result(name, 'warn', `${file} names ${s.address}, but the sinkhole listens on port ${s.port}; containers ask port 53`, 'run the sinkhole on port 53')
    return result(name, 'ok', `${file}: dns ${JSON.stringify(dns)}`)
  }
  return result(name, 'warn', `${file}: dns is ${JSON.stringify(dns ?? null)}, not ${s.address}: containers bypass the sinkhole (the kernel block still applies)`, fix)
}

/** The deployed-host checks, in order (the sinkhole probe uses the policy the token check read). */
export const DEPLOYED_CHECKS: readonly Check[] = [serverReachable, tokenValid, rulesPresent, sinkholeAnswering, dockerUsesSinkhole]
