// The fleet proof with real processes: one `egress-guard server` on loopback, three `egress-guard agent`
// processes (root namespace, --netns: their iptables rules live in their own namespace), each joined by
// veth to a "target" namespace with a TCP listener. block add -> every agent's connection fails;
// block rm -> it works again; server killed -> rules stay and a restarted agent enforces from its cache;
// server restarted with a block added meanwhile -> agents catch up.
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync, appendFileSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { requires, capabilities } from '../helpers/caps.js'
import { makeNs, link, sh } from '../helpers/netns.js'
import { startEchoServer, probe } from '../helpers/traffic.js'
import { CLI, runCli } from '../helpers/cli.js'
import { freePort } from '../helpers/dnsmasq.js'

const TARGET = '203.0.113.10'
const TARGET2 = '203.0.113.11'
const PORT = 8080
const AGENTS = 3

/** A long-running CLI process; stderr kept for failure messages; killed in teardown. */
type Proc = ChildProcess & { logs: () => string; enforced: Map<number, number> }
function startCli(t: { teardown: (f: () => unknown) => void }, args: string[], name: string): Proc {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }) as Proc
  let out = ''
  let buf = ''
  child.enforced = new Map()
  const onData = (d: Buffer): void => {
    out = (out + String(d)).slice(-20000)
    buf += String(d)
    let i
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      // The agent logs "policy enforced" with the version once its kernel apply returned.
      if (!line.includes('"policy enforced"')) continue
      try {
        const j = JSON.parse(line) as { time: number; version: number }
        child.enforced.set(j.version, j.time)
      } catch {
        /* not JSON */
      }
    }
  }
  child.stdout!.on('data', onData)
  child.stderr!.on('data', onData)
  child.logs = () => `--- ${name} ---\n${out}`
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  return child
}

function stopped(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode)
    child.once('exit', (code) => resolve(code))
    child.kill(signal)
  })
}

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs: number, stepMs = 50): Promise<number> {
  const t0 = Date.now()
  for (;;) {
    if (await cond()) return Date.now() - t0
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`)
    await new Promise((r) => setTimeout(r, stepMs))
  }
}

async function waitHealthy(url: string, timeoutMs: number): Promise<void> {
  await waitFor(`${url}/healthz`, async () => {
    try {
      return (await fetch(`${url}/healthz`)).ok
    } catch {
      return false
    }
  }, timeoutMs, 100)
}

/** Every namespace in `nss`: is a TCP connect to ip:PORT refused (true) or accepted (false)? */
async function allBlocked(nss: string[], ip: string): Promise<boolean> {
  const r = await Promise.all(nss.map((ns) => probe(ns, 'tcp', ip, PORT, 1000)))
  return r.every((x) => !x.ok)
}
async function allOpen(nss: string[], ip: string): Promise<boolean> {
  const r = await Promise.all(nss.map((ns) => probe(ns, 'tcp', ip, PORT, 1000)))
  return r.every((x) => x.ok)
}

function tokenOf(stdout: string): string {
  try {
    const j = JSON.parse(stdout) as { token?: string }
    if (j.token) return j.token
  } catch {
    /* plain text */
  }
  const m = /([A-Za-z0-9_-]{40,})/.exec(stdout)
  if (!m) throw new Error(`no token in: ${stdout}`)
  return m[1]!
}

t.test('fleet: server + 3 agents, each enforcing in its own namespace', async (t) => {
  if (!requires(t, capabilities.netns(), capabilities.tool('iptables'), capabilities.tool('ipset'))) return
  const tmp = mkdtempSync(join(tmpdir(), `eg-fleet-${process.pid}-`))
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }))
  const data = join(tmp, 'data')
  const lists = join(tmp, 'blocklists')
  sh('mkdir', ['-p', data, lists])
  writeFileSync(join(lists, 'fleet.txt'), '# the fleet list\n')

  // Target namespace: both target addresses on its loopback, one veth (its own /30) per agent.
  const tgt = makeNs(t, 'tg')
  sh('ip', ['-n', tgt, 'addr', 'add', `${TARGET}/32`, 'dev', 'lo'])
  sh('ip', ['-n', tgt, 'addr', 'add', `${TARGET2}/32`, 'dev', 'lo'])
  await startEchoServer(t, tgt, PORT, [TARGET])
  const nss: string[] = []
  for (let i = 0; i < AGENTS + 1; i++) {
    const ns = makeNs(t, `ag${i}`)
    const a = `198.51.100.${4 * i + 1}`
    const b = `198.51.100.${4 * i + 2}`
    link(ns, [`${a}/30`], tgt, [`${b}/30`])
    sh('ip', ['-n', ns, 'route', 'add', '203.0.113.0/24', 'via', b])
    nss.push(ns)
  }
  const agentNss = nss.slice(0, AGENTS)
  t.ok(await allOpen(nss, TARGET), 'before any block, every namespace reaches the target')

  // Server and tokens.
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const serverArgs = ['server', '--data', data, '--blocklists', lists, '--listen', `127.0.0.1:${port}`]
  const adminTok = await runCli(['token', 'create', '--role', 'admin', '--data', data, '--json'])
  t.equal(adminTok.code, 0, adminTok.stderr)
  const adminFile = join(tmp, 'admin.token')
  writeFileSync(adminFile, tokenOf(adminTok.stdout), { mode: 0o600 })
  const tokenFiles: string[] = []
  for (let i = 0; i < AGENTS + 1; i++) {
    const r = await runCli(['token', 'create', '--role', 'agent', '--host', `h${i}`, '--data', data, '--json'])
    t.equal(r.code, 0, r.stderr)
    const f = join(tmp, `h${i}.token`)
    writeFileSync(f, tokenOf(r.stdout), { mode: 0o600 })
    tokenFiles.push(f)
  }
  let server = startCli(t, serverArgs, 'server')
  await waitHealthy(url, 15_000)

  const agentArgs = (i: number, extra: string[] = []): string[] => {
    const hostsFile = join(tmp, `hosts-${i}`)
    try {
      readFileSync(hostsFile)
    } catch {
      writeFileSync(hostsFile, '127.0.0.1 localhost\n')
    }
    return ['agent', '--server', url, '--token-file', tokenFiles[i]!, '--host', `h${i}`, '--state-dir', join(tmp, `state-${i}`),
      '--backend', 'iptables', '--netns', nss[i]!, '--hosts-file', hostsFile, '--upstream', '127.0.0.1:9',
      '--reconcile-interval', '2s', '--report-interval', '1s', '--wait', '20', '--retry-max', '2s', '--log-level', 'info', ...extra]
  }
  const agents = agentNss.map((_, i) => startCli(t, agentArgs(i, i === 0 ? ['--on-exit', 'remove'] : []), `agent h${i}`))
  const logs = (): string => [server, ...agents].map((c) => c.logs()).join('\n')
  t.teardown(async () => {
    // Stop agents first (agent 0 removes its rules), then the server; namespaces go in their own teardown.
    await Promise.all(agents.map((a) => stopped(a)))
    await stopped(server)
  })

  // Every agent reports in (so each long-poll is in place before the block).
  try {
    await waitFor('all agents report', async () => {
      const r = await fetch(`${url}/v1/hosts`, { headers: { authorization: `Bearer ${readFileSync(adminFile, 'utf8').trim()}` } })
      const j = (await r.json()) as { hosts?: Array<{ host: string }> }
      return (j.hosts ?? []).filter((h) => /^h\d$/.test(h.host)).length >= AGENTS
    }, 20_000, 200)
  } catch (e) {
    t.fail(`${(e as Error).message}\n${logs()}`)
    return
  }

  const admin = (args: string[]) => runCli([...args, '--server', url, '--token-file', adminFile])

  // 1. block add -> fails everywhere, quickly.
  const add = await admin(['block', 'add', TARGET, '--reason', 'fleet test: C2', '--json'])
  const addedAt = Date.now()
  t.equal(add.code, 0, add.stderr)
  try {
    // Functional deadline (generous: probes spawn a process per namespace on a shared 2-core machine).
    const ms = await waitFor('connections refused in every agent namespace', () => allBlocked(agentNss, TARGET), 3000, 25)
    t.pass(`blocked everywhere; last probe round finished ${ms} ms after block add returned`)
    // The precise figure: each agent's own "policy enforced" log time for the new version.
    const body = JSON.parse(add.stdout) as { version?: number; entries?: Array<{ added?: string }> }
    const version = body.version
    // From the server's own timestamp of the push (the CLI's exit comes later than the push itself).
    const pushedAt = body.entries?.[0]?.added ? Date.parse(body.entries[0].added) : addedAt
    if (version !== undefined) {
      const lat = agents.map((a) => (a.enforced.get(version) ?? NaN) - pushedAt)
      t.comment(`push (server time) -> kernel apply done, per agent: ${lat.map((x) => `${x} ms`).join(', ')}`)
      t.ok(lat.every((x) => x < 3000), 'every agent logged the new version as enforced')
    }
  } catch (e) {
    t.fail(`${(e as Error).message}\n${logs()}`)
    return
  }
  // The fleet view: every agent reported the new version right after applying it.
  const adminToken = readFileSync(adminFile, 'utf8').trim()
  const fleet = async (): Promise<{ current: { etag: string }; hosts: Array<{ host: string; state: string; etag: string; counts: { nets: number } }> }> =>
    (await fetch(`${url}/v1/hosts`, { headers: { authorization: `Bearer ${adminToken}` } })).json() as never
  await waitFor('every agent in-sync in GET /v1/hosts', async () => {
    const f = await fleet()
    return f.hosts.filter((h) => /^h\d$/.test(h.host) && h.state === 'in-sync' && h.etag === f.current.etag).length === AGENTS
  }, 5000, 100).then(
    () => t.pass('GET /v1/hosts shows every agent in-sync with the new etag'),
    async (e: Error) => t.fail(`${e.message}: ${JSON.stringify(await fleet())}`),
  )
  t.ok((await probe(nss[AGENTS]!, 'tcp', TARGET, PORT, 1000)).ok, 'a namespace without an agent still connects (the block is the agents\' doing)')
  t.ok(await allOpen(agentNss, TARGET2), 'an address that is not blocked still works from the agents\' namespaces')

  // 2. block rm -> works again.
  const rm = await admin(['block', 'rm', TARGET, '--reason', 'fleet test: done'])
  t.equal(rm.code, 0, rm.stderr)
  const msRm = await waitFor('connections work again', () => allOpen(agentNss, TARGET), 3000, 25).catch((e: Error) => {
    t.fail(`${e.message}\n${logs()}`)
    return -1
  })
  if (msRm < 0) return
  t.pass(`unblocked everywhere within ${msRm} ms`)

  // 3. Block again, then kill the server: enforcement stays.
  t.equal((await admin(['block', 'add', TARGET, '--reason', 'fleet test: again'])).code, 0)
  await waitFor('blocked again', () => allBlocked(agentNss, TARGET), 3000, 25)
  await stopped(server, 'SIGKILL')
  await new Promise((r) => setTimeout(r, 3000)) // several failed long-polls and backoffs
  t.ok(await allBlocked(agentNss, TARGET), 'server gone: every agent keeps enforcing')
  t.ok(agents.every((a) => a.exitCode === null), 'no agent exited because the server is down')

  // 4. Agent h0 stops with --on-exit remove (rules gone), then starts again while the server is down:
  //    it enforces from its cache.
  t.equal(await stopped(agents[0]!), 0, 'agent h0 exits 0 on SIGTERM')
  await waitFor('h0 rules removed', async () => (await probe(nss[0]!, 'tcp', TARGET, PORT, 1000)).ok, 3000)
  t.pass('on-exit remove took h0\'s rules away')
  agents[0] = startCli(t, agentArgs(0), 'agent h0 (restarted)')
  try {
    const ms = await waitFor('restarted h0 enforces from its cache', async () => !(await probe(nss[0]!, 'tcp', TARGET, PORT, 1000)).ok, 10_000)
    t.pass(`restarted agent enforces its cached policy with the server down (${ms} ms)`)
  } catch (e) {
    t.fail(`${(e as Error).message}\n${logs()}`)
    return
  }

  // 5. A block lands in the blocklist repository while the server is down; the server comes back on the
  //    same data dir and port; every agent catches up.
  appendFileSync(join(lists, 'fleet.txt'), `${TARGET2} # added while the server was down\n`)
  server = startCli(t, serverArgs, 'server (restarted)')
  await waitHealthy(url, 15_000)
  try {
    const ms = await waitFor('agents catch up', () => allBlocked(agentNss, TARGET2), 15_000, 100)
    t.pass(`agents caught up ${ms} ms after the server came back (includes their backoff)`)
  } catch (e) {
    t.fail(`${(e as Error).message}\n${logs()}`)
    return
  }
  t.ok(await allBlocked(agentNss, TARGET), 'the earlier block still holds')
})

t.test('one agent with the nftables backend: block add / rm through the server', async (t) => {
  if (!requires(t, capabilities.netns(), capabilities.tool('nft'))) return
  const tmp = mkdtempSync(join(tmpdir(), `eg-fleet-nft-${process.pid}-`))
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }))
  const data = join(tmp, 'data')
  const lists = join(tmp, 'blocklists')
  sh('mkdir', ['-p', data, lists])
  const tgt = makeNs(t, 'tn')
  sh('ip', ['-n', tgt, 'addr', 'add', `${TARGET}/32`, 'dev', 'lo'])
  await startEchoServer(t, tgt, PORT, [TARGET])
  const ns = makeNs(t, 'an')
  link(ns, ['198.51.100.201/30'], tgt, ['198.51.100.202/30'])
  sh('ip', ['-n', ns, 'route', 'add', '203.0.113.0/24', 'via', '198.51.100.202'])
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const adminFile = join(tmp, 'admin.token')
  const agentFile = join(tmp, 'agent.token')
  t.equal((await runCli(['token', 'create', '--role', 'admin', '--data', data, '--out', adminFile])).code, 0)
  t.equal((await runCli(['token', 'create', '--role', 'agent', '--host', 'n1', '--data', data, '--out', agentFile])).code, 0)
  const server = startCli(t, ['server', '--data', data, '--blocklists', lists, '--listen', `127.0.0.1:${port}`, '--admin-token-file', adminFile, '--log-level', 'warn'], 'server')
  await waitHealthy(url, 15_000)
  writeFileSync(join(tmp, 'hosts'), '127.0.0.1 localhost\n')
  const agent = startCli(t, ['agent', '--server', url, '--token-file', agentFile, '--host', 'n1', '--state-dir', join(tmp, 'state'), '--backend', 'nftables',
    '--netns', ns, '--hosts-file', join(tmp, 'hosts'), '--upstream', '127.0.0.1:9', '--wait', '20', '--log-level', 'info'], 'agent n1')
  t.teardown(async () => {
    await stopped(agent)
    await stopped(server)
  })
  await waitFor('agent enforces', async () => agent.enforced.size > 0, 20_000).catch((e: Error) => t.fail(`${e.message}\n${agent.logs()}`))
  t.ok((await probe(ns, 'tcp', TARGET, PORT, 1000)).ok, 'reachable before the block')
  const admin = (args: string[]) => runCli([...args, '--server', url, '--token-file', adminFile])
  t.equal((await admin(['block', 'add', TARGET, '--reason', 'nft fleet test'])).code, 0)
  await waitFor('refused', async () => !(await probe(ns, 'tcp', TARGET, PORT, 1000)).ok, 3000, 25).then(
    (ms) => t.pass(`nftables: blocked within ${ms} ms of block add returning`),
    (e: Error) => t.fail(`${e.message}\n${agent.logs()}`),
  )
  t.match(inNsNft(ns), /203\.0\.113\.10/, 'the address is in the agent\'s nftables set')
  t.equal((await admin(['block', 'rm', TARGET, '--reason', 'done'])).code, 0)
  await waitFor('works again', async () => (await probe(ns, 'tcp', TARGET, PORT, 1000)).ok, 3000, 25).then(
    (ms) => t.pass(`nftables: unblocked within ${ms} ms`),
    (e: Error) => t.fail(`${e.message}\n${agent.logs()}`),
  )
})

function inNsNft(ns: string): string {
  return sh('ip', ['netns', 'exec', ns, 'nft', 'list', 'ruleset'])
}
