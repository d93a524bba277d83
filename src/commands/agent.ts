// `egress-guard agent`: the per-host daemon. Reads its options once (src/config.ts, section "agent"),
// builds the components (API client, enforcer, resolver, controller, hosts block, sinkhole, hit log)
// and hands them to createAgent; runs until SIGINT/SIGTERM. Rules stay in place on exit unless
// --on-exit remove.
import { hostname } from 'node:os'
import { readFileSync, watch, type FSWatcher } from 'node:fs'
import { isIP } from 'node:net'
import type { Command, CommandIO } from './types.js'
import { durationOption, helpText, intOption, loadOptions, type Spec } from '../config.js'
import { errors } from '../errors.js'
import { createLogger } from '../log.js'
import { createApiClient } from '../client/api-client.js'
import { createEnforcer, BACKENDS, type BackendKind } from '../enforce/factory.js'
import { createEnforcementController } from '../enforce/controller.js'
import { createHostsFile } from '../enforce/hosts-file.js'
import { createAddressBook } from '../resolve/address-book.js'
import type { Upstream } from '../resolve/dns-client.js'
import { buildMatcher } from '../policy/matcher.js'
import { createSinkhole } from '../sinkhole/sinkhole.js'
import { parseBlockMode } from '../sinkhole/answer.js'
import { createHitLog } from '../sinkhole/hit-log.js'
import { createDockerContainers } from '../docker/containers.js'
import { parseListenSpec } from '../sinkhole/listen-spec.js'
import { createDockerApiMonitor } from '../docker/api-exposure.js'
import { createAgent, type AgentDeps } from '../agent/agent.js'
import { createContainerEnforcer } from '../enforce/container-factory.js'
import { createLearnRecorder } from '../sinkhole/learn-recorder.js'
import { createContainerEgress } from '../agent/container-egress.js'
import { sinkholeForContainers } from '../agent/sinkhole-addresses.js'
import { VERSION } from '../version.js'
import { createServerAddresses } from '../agent/server-addresses.js'
import { controlPlane, coverWarnings, serverTarget, type ControlPlane } from '../enforce/control-plane.js'
import { parseResolvConf, readBridgeGateways } from '../up/environment.js'
import { parseCidr } from '../policy/net.js'
import { createPolicyCache } from '../agent/policy-cache.js'
import { combinePolicies, createLocalSource, serverEtag } from '../agent/local-source.js'

export const AGENT_VERSION = VERSION

const spec = {
  server: { type: 'string', help: 'server URL, e.g. https://guard.internal:8443 (omit for --blocklists only)' },
  'token-file': { type: 'string', help: 'file holding this host\'s agent token' },
  'ca-file': { type: 'string', help: 'PEM CA to trust for the server\'s certificate' },
  host: { type: 'string', help: 'host name reported to the server (default: os.hostname())' },
  blocklists: { type: 'string', help: 'blocklist directory, alone or merged with the server policy' },
  'state-dir': { type: 'string', default: '/var/lib/egress-guard', help: 'policy cache and hit spool' },
  'discard-cache': { type: 'boolean', help: 'move a corrupt policy cache aside instead of refusing to start' },
  backend: { type: 'string', default: 'iptables', help: 'iptables | nftables | dry-run' },
  netns: { type: 'string', help: 'enforce inside this network namespace (the agent itself stays outside)' },
  'hosts-file': { type: 'string', default: '/etc/hosts', help: 'hosts file whose managed block is kept' },
  'no-hosts-file': { type: 'boolean', help: 'do not manage a hosts-file block' },
  upstream: { type: 'string', multiple: true, help: 'DNS upstream IP[:PORT] for resolving blocked names (repeatable)' },
  protect: { type: 'string', multiple: true, help: 'CIDR never blocked because a blocked name resolved to it (repeatable; the server, upstreams, sinkhole and Docker bridges are always protected)' },
  'sinkhole-listen': { type: 'string', multiple: true, help: 'embedded sinkhole on ADDR:PORT, or IFACE:PORT (docker0:53: its IPv4 address, bound when it appears, 127.0.0.1 meanwhile; repeatable)' },
  'sinkhole-mode': { type: 'string', default: 'null', help: 'null | nxdomain | refused | IP[,IP]' },
  'sinkhole-allow': { type: 'string', multiple: true, help: 'client networks the sinkhole answers, or host (this host\'s own addresses) (default loopback + Docker bridges + host)' },
  'hit-log': { type: 'string', help: 'JSON-lines file of sinkhole hits' },
  'docker-socket': { type: 'string', help: 'Docker API socket: names containers in hits and holds labelled containers to their profiles' },
  'on-exit': { type: 'string', default: 'keep', help: 'keep | remove: what happens to rules when the agent stops' },
  'reconcile-interval': { type: 'string', default: '10s', help: 'drift check period' },
  'report-interval': { type: 'string', default: '10s', help: 'status report period' },
  wait: { type: 'string', default: '30', help: 'long-poll wait in seconds (1..60)' },
  'retry-max': { type: 'string', default: '30s', help: 'longest wait between retries while the server is unreachable' },
  poll: { type: 'string', help: 'plain polling at this period instead of long-poll (e.g. 10s; for comparison)' },
  'log-level': { type: 'string', default: 'info', help: 'pino level' },
} as const satisfies Spec

const USAGE = 'usage: egress-guard agent [--server URL --token-file F] [--blocklists DIR] [options]'

/** `IP` or `IP:PORT` or `[IPv6]:PORT` -> address and port. */
export function parseHostPort(v: string, defPort: number, what: string): { address: string; port: number } {
  let address = v
  let port = defPort
  const br = /^\[([^\]]+)\](?::(\d+))?$/.exec(v)
  if (br) {
    address = br[1]!
    if (br[2]) port = Number(br[2])
  } else if (isIP(v) === 0 && /^[^:]+:\d+$/.test(v)) {
    const i = v.lastIndexOf(':')
    address = v.slice(0, i)
    port = Number(v.slice(i + 1))
  }
  if (isIP(address) === 0) throw errors.config(`--${what}: ${JSON.stringify(v)} is not IP[:PORT]`)
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw errors.config(`--${what}: bad port in ${JSON.stringify(v)}`)
  return { address, port }
}

function readFileOr(path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return ''
  }
}

function readToken(path: string): string {
  let t: string
  try {
    t = readFileSync(path, 'utf8').trim()
  } catch (e) {
    throw errors.config(`--token-file ${path}: ${(e as Error).message}`)
  }
  if (!t) throw errors.config(`--token-file ${path}: empty`)
  return t
}

const command: Command = {
  summary: 'per-host daemon: sync the policy, enforce it (kernel, hosts file, sinkhole), report',
  async run(argv: string[], io: CommandIO): Promise<number> {
    const { options: o } = loadOptions(argv, spec, { env: io.env, section: 'agent', allowPositionals: false })
    if (o.help) {
      io.stdout(helpText(USAGE, spec))
      return 0
    }
    if (!o.server && !o.blocklists) throw errors.usage('agent: give --server URL (with --token-file) and/or --blocklists DIR')
    if (o.server && !o['token-file']) throw errors.usage('agent: --server needs --token-file')
    const backend = o.backend as BackendKind
    if (!BACKENDS.includes(backend)) throw errors.config(`--backend must be one of ${BACKENDS.join(', ')}`)
    if (o['on-exit'] !== 'keep' && o['on-exit'] !== 'remove') throw errors.config('--on-exit must be keep or remove')
    const reconcileIntervalMs = durationOption('reconcile-interval', o['reconcile-interval'], 10_000)
    const reportIntervalMs = durationOption('report-interval', o['report-interval'], 10_000)
    const pollMs = o.poll !== undefined ? durationOption('poll', o.poll, 10_000) : undefined
    const waitSec = intOption('wait', o.wait, 30, 1, 60)
    const retryMaxMs = durationOption('retry-max', o['retry-max'], 30_000)
    const upstreams: Upstream[] = (o.upstream ?? []).map((u) => parseHostPort(u, 53, 'upstream'))
    const listens = (o['sinkhole-listen'] ?? []).map((l) => parseListenSpec(l, 53, 'sinkhole-listen'))
    const host = o.host ?? hostname()
    if (!/^[A-Za-z0-9_.-]{1,253}$/.test(host)) throw errors.config(`--host ${JSON.stringify(host)}: letters, digits, '-', '_' and '.' only`)
    const target = o.server ? serverTarget(o.server) : undefined
    const extraProtect = (o.protect ?? []).map((c) => {
      const r = parseCidr(c)
      if (!r.ok) throw errors.config(`--protect ${JSON.stringify(c)}: ${r.message}`)
      return r.canonical
    })

    const log = createLogger({ level: o['log-level'] ?? 'info' }).child({ host })
    // The control plane: what this host must always reach (its server, DNS upstreams, sinkhole) and
    // the addresses a blocked name may never put into the kernel (those, plus Docker's bridge
    // gateways and --protect). The server's name is resolved as the HTTP client resolves it: at
    // start, every minute and after a failed request; a change re-applies the policy at once (one
    // that lands while the agent is starting is applied right after the start).
    let agentStarted = false
    let changedDuringStart = false
    const serverAddrs = target
      ? createServerAddresses({
          host: target.host,
          log,
          onChange: () => {
            cp = computeControlPlane()
            if (agentStarted) void agent.controlPlaneChanged()
            else changedDuringStart = true
          },
        })
      : undefined
    const bridges = await readBridgeGateways(o.netns)
    // A server known by name is found through the system resolver: its nameservers are control plane too.
    const resolvers = target && !target.ip ? parseResolvConf(readFileOr('/etc/resolv.conf')) : []
    const computeControlPlane = (): ControlPlane =>
      controlPlane({
        ...(target ? { server: { addresses: serverAddrs!.current(), port: target.port } } : {}),
        upstreams,
        resolvers,
        // An interface listen (docker0:53) is the bridge gateway, protected with the bridges.
        sinkhole: listens.filter((l): l is { address: string; port: number } => 'address' in l),
        bridges,
        protect: extraProtect,
      })
    let cp = computeControlPlane()
    const client = o.server
      ? createApiClient({
          url: o.server,
          token: readToken(o['token-file']!),
          // The long-poll holds the request up to waitSec; the client adds that to this timeout itself.
          timeoutMs: 15_000,
          ...(o['ca-file'] ? { ca: readFileSync(o['ca-file'], 'utf8') } : {}),
          ...(serverAddrs ? { onTransportError: () => serverAddrs.refreshSoon() } : {}),
        })
      : undefined

    const enforcer = createEnforcer(backend, { ...(o.netns ? { netns: o.netns } : {}), logger: log, print: (l) => io.stdout(l + '\n') })
    const hosts = o['no-hosts-file'] ? undefined : createHostsFile(o['hosts-file']!)
    const book = createAddressBook({ upstreams, minTtlSec: 30, maxTtlSec: 3600, graceSec: 3600, keepAnswers: 3 })
    // Getters: the controller reads the control plane on every apply, so a re-resolved server counts.
    const controller = createEnforcementController({
      enforcer,
      ...(hosts ? { hosts } : {}),
      book,
      get protect() {
        return cp.protect
      },
      get exempt() {
        return cp.exempt
      },
      log,
      reconcileIntervalMs,
    })

    // The container lookup goes to the hit log too: a container's first lookups can arrive before
    // Docker's event about it, and the hit log re-attributes those by time.
    const containers = o['docker-socket'] ? createDockerContainers({ socketPath: o['docker-socket'], log }) : undefined
    const hitLog = listens.length || containers ? createHitLog({ ...(o['hit-log'] ? { file: o['hit-log'] } : {}), intervalMs: 10_000, log, ...(containers ? { containers } : {}) }) : undefined
    // learn-mode lookups, per profile; drained by the learned-names uploader when there is one (a hook:
    // the server side is separate work), else kept bounded in memory.
    const learned = createLearnRecorder()
    const sinkhole = listens.length
      ? createSinkhole({
          listen: listens,
          upstreams,
          matcher: buildMatcher([]),
          blockMode: parseBlockMode(o['sinkhole-mode'] ?? 'null'),
          ...(o['sinkhole-allow']?.length ? { allowClients: [...o['sinkhole-allow']] } : {}),
          ...(hitLog ? { hits: hitLog } : {}),
          ...(containers ? { containers } : {}),
          learn: learned,
          // Allowed answers to held containers wait (bounded) for their pairs to be in the kernel.
          ...(o['docker-socket'] ? { learnPairs: (pairs) => containerEnforcer!.learn(pairs) } : {}),
          log,
        })
      : undefined

    // Containers labelled egress-guard.profile=NAME: held in the kernel to their profile (issue 16).
    // (Declared after the sinkhole that calls it: it is only called once containers are held.)
    const containerEnforcer = containers ? createContainerEnforcer(backend, { ...(o.netns ? { netns: o.netns } : {}), logger: log, print: (l) => io.stdout(l + '\n') }) : undefined
    const containerEgress =
      containers && containerEnforcer
        ? createContainerEgress({
            enforcer: containerEnforcer,
            containers,
            host,
            sinkhole: () => sinkholeForContainers(sinkhole?.addresses() ?? [], listens),
            ...(hitLog ? { hits: hitLog } : {}),
            ...(sinkhole ? { onClientProfiles: (m) => sinkhole.setClientProfiles(m) } : {}),
            log,
          })
        : undefined

    if (upstreams.length === 0) {
      log.warn('no --upstream: blocked names are not resolved into kernel sets (the hosts block and the sinkhole still cover them) and the sinkhole cannot forward other names')
    }
    // Reported to the fleet view: whether this host's dockerd takes API calls over TCP (Docker lives in --netns when given).
    const dockerApi = createDockerApiMonitor({ ...(o.netns ? { netns: o.netns } : {}), log })
    const deps: AgentDeps = {
      log,
      cache: createPolicyCache({ dir: o['state-dir']!, discardCorrupt: o['discard-cache'], log }),
      controller,
      ...(client ? { client } : {}),
      ...(o.blocklists ? { local: createLocalSource({ dir: o.blocklists, log }), combine: combinePolicies } : {}),
      etagOf: serverEtag,
      controlPlaneNotices: (p) => coverWarnings(p.entries, cp.endpoints),
      ...(sinkhole ? { sinkhole: { start: () => sinkhole.start(), stop: () => sinkhole.stop(), setMatcher: (m) => sinkhole.setMatcher(m), waiting: () => sinkhole.waiting() }, buildMatcher } : {}),
      dockerApi: () => dockerApi.current(),
      ...(hitLog ? { hits: hitLog } : {}),
      ...(containerEgress ? { containerEgress } : {}),
      remove: async () => {
        await containerEnforcer?.remove()
        await enforcer.remove()
        await hosts?.remove()
      },
    }
    const agent = createAgent(
      {
        host,
        agentVersion: AGENT_VERSION,
        stateDir: o['state-dir']!,
        waitSec: pollMs !== undefined ? 0 : waitSec,
        ...(pollMs !== undefined ? { pollIntervalMs: pollMs } : {}),
        reportIntervalMs,
        onExit: o['on-exit'] as 'keep' | 'remove',
        backoff: { baseMs: Math.min(500, retryMaxMs), maxMs: retryMaxMs },
      },
      deps,
    )
    if (serverAddrs) {
      // Before the cached policy is enforced: its first apply already exempts the server. Bounded, so
      // a resolver that does not answer delays the start by seconds, not forever (the retries and the
      // minute timer catch up; an IP-literal --server needs no lookup at all).
      await Promise.race([serverAddrs.refresh(), new Promise((r) => setTimeout(r, 5000).unref())])
      serverAddrs.start()
      if (serverAddrs.current().length === 0) log.warn({ server: target!.host }, 'the server\'s name does not resolve yet: it is protected once it does')
    }
    await containers?.start()
    await dockerApi.start()
    changedDuringStart = false
    await agent.start()
    agentStarted = true
    if (changedDuringStart) void agent.controlPlaneChanged()
    // SIGHUP, or a change in the blocklist directory (debounced: editors write in several steps),
    // starts a sync round at once instead of at the end of the current long-poll.
    const offReload = io.onReload(() => {
      log.info('SIGHUP: syncing now')
      agent.wake()
    })
    let watcher: FSWatcher | undefined
    let debounce: NodeJS.Timeout | undefined
    if (o.blocklists) {
      try {
        watcher = watch(o.blocklists, () => {
          clearTimeout(debounce)
          debounce = setTimeout(() => agent.wake(), 300)
        })
        watcher.on('error', (e) => log.warn({ err: e.message }, 'blocklist directory watch failed; changes are picked up every round'))
      } catch (e) {
        log.warn({ err: (e as Error).message }, 'cannot watch the blocklist directory; changes are picked up every round')
      }
    }
    await new Promise<void>((resolve) => {
      if (io.signal.aborted) return resolve()
      io.signal.addEventListener('abort', () => resolve(), { once: true })
    })
    offReload()
    watcher?.close()
    clearTimeout(debounce)
    serverAddrs?.stop()
    await agent.stop()
    containers?.stop()
    dockerApi.stop()
    return 0
  },
}
export default command
