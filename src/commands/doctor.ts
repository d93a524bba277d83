// `egress-guard doctor`: checks this host's prerequisites (privileges, firewall tools and kernel
// support, Docker's DOCKER-USER chain, a Docker API exposed over TCP), each with how to fix it; exit 1
// when a required check fails.
// With the agent's options (`--config /etc/egress-guard/agent.json`, or --server/--sinkhole-listen)
// it also checks the deployed host end to end (src/doctor/deployed-checks.ts).
import type { Command } from './types.js'
import { helpText, loadOptions, type Spec } from '../config.js'
import { DEFAULT_CHECKS, defaultContext, runChecks } from '../doctor/checks.js'
import { DEPLOYED_CHECKS, type DeployedContext } from '../doctor/deployed-checks.js'
import { FALLBACK_ADDRESS, parseListenSpec, type ListenSpec } from '../sinkhole/listen-spec.js'
import { interfaceIPv4, readLinks } from '../sinkhole/interfaces.js'

/** The address to query for a listen: an interface's (docker0:53) as the kernel has it now, else where the sinkhole waits. */
async function sinkholeAddress(l: ListenSpec): Promise<{ address: string; port: number }> {
  if ('address' in l) return l
  const links = await readLinks().catch(() => [])
  return { address: interfaceIPv4(links, l.interface) ?? FALLBACK_ADDRESS, port: l.port }
}

const spec = {
  netns: { type: 'string', help: 'check inside this named network namespace' },
  // The agent's own option names, so `doctor --config /etc/egress-guard/agent.json` checks that agent.
  server: { type: 'string', help: 'deployed host: the server URL to check' },
  'token-file': { type: 'string', help: 'deployed host: this host\'s agent token' },
  'ca-file': { type: 'string', help: 'deployed host: PEM CA for the server\'s certificate' },
  backend: { type: 'string', default: 'iptables', help: 'deployed host: iptables | nftables (whose rules to look for)' },
  'sinkhole-listen': { type: 'string', multiple: true, help: 'deployed host: the sinkhole ADDR:PORT to query' },
  'daemon-json': { type: 'string', default: '/etc/docker/daemon.json', help: 'Docker\'s daemon.json (its "hosts" for the API check; "dns" on a deployed host)' },
  deployed: { type: 'boolean', help: 'also check the deployed host (implied by --server or --sinkhole-listen)' },
} as const satisfies Spec

const USAGE = `usage: egress-guard doctor [--netns NAME] [--json]
       egress-guard doctor --config /etc/egress-guard/agent.json   (a deployed host, end to end)
       egress-guard doctor --server URL --token-file F --sinkhole-listen ADDR:PORT [--backend nftables]

Checks what egress-guard needs on this host; prints each check with how to fix it. With the agent's
options it also checks the deployed host: server reachable, token valid, rules present, sinkhole
answering a blocked name, Docker pointed at the sinkhole.
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
    const sink = options['sinkhole-listen'][0]
    const deployed = options.deployed || !!options.server || !!sink
    const ctx: DeployedContext = {
      ...defaultContext(options.netns),
      daemonJson: options['daemon-json'] ?? '/etc/docker/daemon.json',
      deployed: {
        ...(options.server ? { server: options.server } : {}),
        ...(options['token-file'] ? { tokenFile: options['token-file'] } : {}),
        ...(options['ca-file'] ? { ca: options['ca-file'] } : {}),
        backend: options.backend ?? 'iptables',
        ...(sink ? { sinkhole: await sinkholeAddress(parseListenSpec(sink, 53, 'sinkhole-listen')) } : {}),
        daemonJson: options['daemon-json'] ?? '/etc/docker/daemon.json',
      },
    }
    const results = await runChecks(ctx, deployed ? [...DEFAULT_CHECKS, ...DEPLOYED_CHECKS] : DEFAULT_CHECKS)
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
