// `egress-guard up`: the server, an agent and its DNS sinkhole in one process on this host, for a first
// try with embedded defaults (./blocklists, ./data, 127.0.0.1:8787, the sinkhole on docker0's address,
// on 127.0.0.1 until docker0 has one). It composes the real `server` and `agent` commands in-process (the agent talks to the
// server over loopback with its own agent-role token), so `up` behaves exactly like a deployed pair.
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join, resolve } from 'node:path'
import type { Command, CommandIO } from './types.js'
import { helpText, intOption, loadOptions, type Spec } from '../config.js'
import { errors } from '../errors.js'
import { BACKENDS, type BackendKind } from '../enforce/factory.js'
import { defaultContext, runChecks } from '../doctor/checks.js'
import { createApiClient } from '../client/api-client.js'
import { readFile } from 'node:fs/promises'
import { defaultUpstreams } from '../up/environment.js'
import { interfaceIPv4, readLinks } from '../sinkhole/interfaces.js'
import { FALLBACK_ADDRESS } from '../sinkhole/listen-spec.js'
import { ensureTokens } from '../up/tokens.js'
import { missingFor } from '../up/preflight.js'
import { waitForReport } from '../up/progress.js'
import { parseListen } from './server.js'

const spec = {
  blocklists: { type: 'string', default: './blocklists', help: 'blocklist directory (the policy)' },
  data: { type: 'string', default: './data', help: 'store, tokens and agent state' },
  listen: { type: 'string', default: '127.0.0.1:8787', help: 'the server\'s HOST:PORT' },
  'sinkhole-address': { type: 'string', help: 'sinkhole address (default docker0\'s IPv4 address, followed as Docker creates or changes it; 127.0.0.1 until it has one)' },
  'sinkhole-port': { type: 'string', default: '53', help: 'sinkhole port' },
  upstream: { type: 'string', multiple: true, help: 'DNS upstream IP[:PORT] (repeatable; default: /etc/resolv.conf nameservers)' },
  backend: { type: 'string', default: 'iptables', help: 'iptables | nftables' },
  'hosts-file': { type: 'string', default: '/etc/hosts', help: 'hosts file whose managed block is kept' },
  netns: { type: 'string', help: 'enforce the firewall inside this network namespace' },
  host: { type: 'string', help: 'this host\'s name in the fleet view (default: os.hostname())' },
  'docker-socket': { type: 'string', help: 'Docker API socket for naming containers in hits (default /var/run/docker.sock when present)' },
  'dry-run': { type: 'boolean', help: 'print what up would do (prerequisites, files, the kernel and hosts changes) and exit' },
  'log-level': { type: 'string', default: 'warn', help: 'pino level of the server and agent logs (stderr)' },
} as const satisfies Spec

const USAGE = `usage: egress-guard up [--blocklists DIR] [--data DIR] [--listen HOST:PORT] [--backend iptables|nftables]
                       [--sinkhole-address IP] [--sinkhole-port N] [--upstream IP[:PORT]...] [--hosts-file PATH]
                       [--netns NAME] [--dry-run]

Server + agent + DNS sinkhole in one process on this host (as root). First start makes DATA/admin.token
(mode 0600; admin commands in this directory find it) and an agent token. Stops on SIGINT/SIGTERM;
rules stay in place (egress-guard uninstall removes them).`

/** An in-process sub-command with its own stop signal (so up stops the agent before the server). */
function subIo(io: CommandIO, signal: AbortSignal): CommandIO {
  // env {}: up has already read EG_* for itself; the sub-commands get everything as flags.
  return { stdout: io.stdout, stderr: io.stderr, env: {}, signal, onReload: io.onReload }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

const command: Command = {
  summary: 'all-in-one on this host: server + agent + sinkhole with embedded defaults',
  async run(argv, io) {
    const { options: o } = loadOptions(argv, spec, { env: io.env, section: 'up', allowPositionals: false })
    if (o.help) {
      io.stdout(helpText(USAGE, spec))
      return 0
    }
    const say = (line: string): void => io.stderr(`up: ${line}\n`)
    const backend = o.backend as BackendKind
    if (backend === 'dry-run' || !BACKENDS.includes(backend)) throw errors.config('--backend must be iptables or nftables (use --dry-run to try without changes)')
    const { host: listenHost, port: listenPort } = parseListen(o.listen ?? '127.0.0.1:8787')
    const sinkPort = intOption('sinkhole-port', o['sinkhole-port'], 53, 1, 65535)
    // The kernel's list, not os.networkInterfaces(): docker0 has no carrier until a container runs, and
    // libuv leaves such interfaces out. Without docker0 yet, the sinkhole serves loopback and binds
    // docker0's address as soon as Docker creates it (the agent follows it: --sinkhole-listen docker0:PORT).
    const bridge = o['sinkhole-address'] ? undefined : interfaceIPv4((await readLinks().catch(() => undefined)) ?? [], 'docker0')
    const sinkAddress = o['sinkhole-address'] ?? bridge ?? FALLBACK_ADDRESS
    const hostPort = (a: string): string => `${a.includes(':') ? `[${a}]` : a}:${sinkPort}`
    const sinkListen = o['sinkhole-address'] ? hostPort(o['sinkhole-address']) : `docker0:${sinkPort}`
    const upstreams = o.upstream.length ? [...o.upstream] : await defaultUpstreams({ address: sinkAddress, port: sinkPort })
    if (upstreams.length === 0) throw errors.config('no DNS upstream: /etc/resolv.conf has no usable nameserver; give --upstream IP[:PORT]')
    const host = o.host ?? hostname()
    const dataDir = resolve(o.data ?? './data')
    const blocklists = resolve(o.blocklists ?? './blocklists')
    const urlHost = listenHost.includes(':') ? `[${listenHost}]` : listenHost
    const url = `http://${urlHost === '0.0.0.0' ? '127.0.0.1' : urlHost === '[::]' ? '[::1]' : urlHost}:${listenPort}`
    const dockerSocket = o['docker-socket'] ?? (existsSync('/var/run/docker.sock') ? '/var/run/docker.sock' : undefined)
    const netnsArgs = o.netns ? ['--netns', o.netns] : []

    say(`checking prerequisites for the ${backend} backend${o.netns ? ` in network namespace ${o.netns}` : ''}`)
    const checks = await runChecks(defaultContext(o.netns))
    const missing = missingFor(backend, checks)
    const dockerApi = checks.find((r) => r.name === 'Docker API')
    if (dockerApi && (dockerApi.status === 'fail' || dockerApi.status === 'warn')) {
      say(`${dockerApi.status === 'fail' ? 'WARNING' : 'note'}: Docker API: ${dockerApi.detail}\n    fix: ${dockerApi.fix ?? 'see egress-guard doctor'}`)
    }

    if (o['dry-run']) {
      for (const m of missing) io.stdout(`missing: ${m.what}\n  fix: ${m.fix}\n`)
      io.stdout(
        [
          `would create ${join(dataDir, 'admin.token')} (mode 0600, admin token) and ${join(dataDir, 'agent.token')} (agent token for host ${host}) unless present`,
          `would start the server on ${url}: policy from ${blocklists}, store in ${dataDir}`,
          `would start the agent (host ${host}, state in ${join(dataDir, 'agent')}, backend ${backend}${o.netns ? `, netns ${o.netns}` : ''})`,
          `would run the DNS sinkhole on ${o['sinkhole-address'] ? sinkListen : bridge ? `${hostPort(bridge)} (docker0)` : `${hostPort(FALLBACK_ADDRESS)} until docker0 has an address`}, forwarding to ${upstreams.join(', ')}`,
          `would keep the managed block in ${o['hosts-file']}`,
          'the kernel and hosts-file changes (egress-guard plan):',
          '',
        ].join('\n'),
      )
      const plan = (await import('./plan.js')).default
      const args = ['--blocklists', blocklists, '--backend', backend, '--hosts-file', o['hosts-file']!, ...upstreams.flatMap((u) => ['--upstream', u]), ...netnsArgs]
      const code = await plan.run(args, subIo(io, io.signal))
      return code === 0 || code === 1 ? 0 : code
    }

    if (missing.length) {
      io.stderr('egress-guard up: cannot start on this host:\n')
      for (const m of missing) io.stderr(`  missing: ${m.what}\n     fix: ${m.fix}\n`)
      io.stderr('  (egress-guard up --dry-run shows what it would do without changing anything)\n')
      return 1
    }

    if (!existsSync(blocklists)) {
      await mkdir(blocklists, { recursive: true })
      say(`created an empty blocklist directory ${blocklists}`)
    }
    const tokens = await ensureTokens(dataDir, host)
    for (const f of tokens.tightened) say(`${f} was readable by others: now mode 0600`)
    say(`admin token: ${tokens.adminFile}${tokens.created.includes('admin') ? ' (created, mode 0600)' : ''}; agent token: ${tokens.agentFile}${tokens.created.includes('agent') ? ' (created)' : ''}`)

    const serverStop = new AbortController()
    const agentStop = new AbortController()
    const logLevel = o['log-level'] ?? 'warn'

    say(`loading blocklists from ${blocklists}; starting the server on ${url}`)
    const server = (await import('./server.js')).default
    const serverArgs = ['--listen', o.listen!, '--data', dataDir, '--blocklists', blocklists, '--admin-token-file', tokens.adminFile, '--log-level', logLevel]
    let serverDone: unknown
    const serverP = server.run(serverArgs, subIo(io, serverStop.signal)).then(
      (c) => (serverDone = { code: c }),
      (e: unknown) => (serverDone = { error: e }),
    )
    const stopServer = async (): Promise<void> => {
      serverStop.abort()
      await serverP
    }
    const admin = createApiClient({ url, token: (await readFile(tokens.adminFile, 'utf8')).trim(), timeoutMs: 10_000 })
    let health: { ok: boolean; version: number } | undefined
    while (!health && serverDone === undefined && !io.signal.aborted) {
      health = await admin.health().catch(() => undefined)
      if (!health) await sleep(100)
    }
    if (serverDone !== undefined) {
      const d = serverDone as { code?: number; error?: unknown }
      if (d.error) throw d.error
      return d.code ?? 1
    }
    if (io.signal.aborted) {
      await stopServer()
      return 0
    }
    const { version, entries } = await admin.listEntries().catch(async (e: unknown) => {
      // Another server already on that port answers /healthz but refuses our token: our own server's
      // listen error (EADDRINUSE) is the real cause; give it a moment to surface.
      await Promise.race([serverP, sleep(2000)])
      const d = serverDone as { error?: unknown } | undefined
      await stopServer()
      throw d?.error ?? e
    })
    const domains = entries.filter((e) => e.kind === 'domain' && !e.allow).length
    const nets = entries.filter((e) => e.kind === 'net').length
    say(`policy version ${version}: ${entries.length} entries (${domains} blocked names, ${nets} addresses/networks)`)

    say(`starting the agent: resolving ${domains} blocked names at ${upstreams.join(', ')}, loading the ${backend} sets and rules`)
    const agent = (await import('./agent.js')).default
    const agentArgs = [
      '--server', url, '--token-file', tokens.agentFile, '--host', host, '--state-dir', join(dataDir, 'agent'),
      '--backend', backend, '--hosts-file', o['hosts-file']!, '--sinkhole-listen', sinkListen,
      ...upstreams.flatMap((u) => ['--upstream', u]), ...(dockerSocket ? ['--docker-socket', dockerSocket] : []),
      ...netnsArgs, '--log-level', logLevel,
    ]
    let agentDone: unknown
    const agentP = agent.run(agentArgs, subIo(io, agentStop.signal)).then(
      (c) => (agentDone = { code: c }),
      (e: unknown) => (agentDone = { error: e }),
    )
    const stopAll = async (): Promise<void> => {
      agentStop.abort()
      await agentP
      await stopServer()
    }
    // Stop waiting for the first report when the agent dies or up is told to stop.
    const waitStop = new AbortController()
    const onAbort = (): void => waitStop.abort()
    io.signal.addEventListener('abort', onAbort, { once: true })
    void agentP.then(() => waitStop.abort())
    void serverP.then(() => waitStop.abort())
    const t0 = Date.now()
    const report = await waitForReport(admin, host, version, waitStop.signal, (ms) => say(`still applying (${Math.round(ms / 1000)} s)...`))
    if (report) {
      const c = report.counts
      say(`enforcing policy version ${report.version} (${((Date.now() - t0) / 1000).toFixed(1)} s): ${c.v4} IPv4 and ${c.v6} IPv6 addresses/networks in the kernel sets, ${c.domains} names in the hosts block and the sinkhole`)
      // The sinkhole's wait for docker0 is said below, in words for this place.
      for (const err of report.errors) if (!err.startsWith('sinkhole: waiting for docker0')) say(`agent reported: ${err}`)
      const dig = (a: string): string => `dig @${a}${sinkPort === 53 ? '' : ` -p ${sinkPort}`} NAME`
      // Where it serves now (docker0 may have appeared while starting). Containers cannot reach the
      // host's loopback: only a bridge address is worth a --dns hint.
      const now = o['sinkhole-address'] ?? interfaceIPv4((await readLinks().catch(() => undefined)) ?? [], 'docker0')
      if (!now) say(`DNS sinkhole on ${hostPort(FALLBACK_ADDRESS)} for now (this host: ${dig(FALLBACK_ADDRESS)}): waiting for docker0 (Docker not started or not installed); it moves to docker0's address when Docker creates it`)
      else if (/^127\.|^::1$/.test(now)) say(`DNS sinkhole on ${hostPort(now)} (it serves this host; ${dig(now)})`)
      else say(`DNS sinkhole on ${hostPort(now)}; point containers at it: docker run --dns ${now} ... (or "dns": ["${now}"] in /etc/docker/daemon.json); this host: ${dig(now)}`)
      say(`ready. Try: egress-guard block add evil.example --reason test; egress-guard hits. Ctrl-C stops (rules stay; egress-guard uninstall removes them)`)
    }
    if (agentDone === undefined && serverDone === undefined && !io.signal.aborted) {
      await new Promise<void>((r) => {
        io.signal.addEventListener('abort', () => r(), { once: true })
        void agentP.then(() => r())
        void serverP.then(() => r())
      })
    }
    io.signal.removeEventListener('abort', onAbort)
    const ended = agentDone !== undefined ? 'agent' : 'server'
    if (io.signal.aborted) say('stopping (rules stay in place)')
    await stopAll()
    for (const d of [agentDone, serverDone] as Array<{ code?: number; error?: unknown } | undefined>) {
      if (d?.error) throw d.error
    }
    if (io.signal.aborted) return 0
    // A component ended on its own without an error: report it rather than exiting silently.
    io.stderr(`egress-guard up: the ${ended} stopped\n`)
    return 1
  },
}
export default command
