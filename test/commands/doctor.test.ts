// doctor: the check list with injected probes (pure), and the real CLI inside a throwaway namespace:
// all ok with Docker's chain warned about, then ok once DOCKER-USER exists; exit 1 with fix lines
// when no firewall tool can be found.
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { capabilities, requires } from '../helpers/caps.js'
import { inNs, makeNs } from '../helpers/netns.js'
import { runCli } from '../helpers/cli.js'
import { CAP_NET_ADMIN, hasCap, parseCapEff, privileges, runChecks, DEFAULT_CHECKS, type CheckContext } from '../../src/doctor/checks.js'
import { errors } from '../../src/errors.js'

t.test('CapEff parsing', async (t) => {
  const mask = parseCapEff('Name:\tnode\nCapInh:\t0000000000000000\nCapEff:\t0000000000001000\n')
  t.equal(mask, 0x1000n)
  t.ok(hasCap(mask!, CAP_NET_ADMIN), 'bit 12 is CAP_NET_ADMIN')
  t.notOk(hasCap(0x2000n, CAP_NET_ADMIN))
  t.equal(parseCapEff('nothing here'), undefined)
})

function ctx(over: Partial<CheckContext>): CheckContext {
  return {
    run: async () => {
      throw errors.missingTool('x: command not found')
    },
    procStatus: async () => 'CapEff:\t0000000000000000\n',
    uid: 1000,
    results: new Map(),
    ...over,
  }
}

t.test('privileges: root, CAP_NET_ADMIN, neither', async (t) => {
  t.match(await privileges(ctx({ uid: 0 })), { status: 'ok', required: true })
  t.match(await privileges(ctx({ procStatus: async () => 'CapEff:\t0000000000001000\n' })), { status: 'ok' })
  const r = await privileges(ctx({}))
  t.equal(r.status, 'fail')
  t.match(r.fix, /CAP_NET_ADMIN/)
})

t.test('no tools at all: the backend check fails with a fix, nothing crashes', async (t) => {
  const results = await runChecks(ctx({ uid: 0 }), DEFAULT_CHECKS)
  t.match(results.find((r) => r.name === 'kernel backend'), { status: 'fail', required: true, fix: /apt-get install/ })
  t.match(results.find((r) => r.name === 'tool ipset'), { status: 'warn', fix: 'apt-get install ipset' })
  t.match(results.find((r) => r.name === 'ip_set kernel support'), { status: 'skip' })
})

t.test('a check that throws becomes a failed result', async (t) => {
  const boom = async (): Promise<never> => {
    throw new Error('boom')
  }
  const r = await runChecks(ctx({}), [boom])
  t.match(r, [{ status: 'fail', detail: 'boom', required: true }])
})

t.test('CLI in a namespace', async (t) => {
  if (!requires(t, capabilities.netns(), capabilities.tool('ipset'), capabilities.tool('iptables'), capabilities.tool('nft'))) return
  const ns = makeNs(t, 'doc')
  const before = inNs(ns, 'ipset', ['list', '-n'])
  const r = await runCli(['doctor', '--netns', ns, '--json'])
  t.equal(r.code, 0, r.stderr)
  const out = JSON.parse(r.stdout) as { ok: boolean; checks: { name: string; status: string; detail: string; fix?: string }[] }
  t.equal(out.ok, true)
  const by = new Map(out.checks.map((c) => [c.name, c]))
  t.equal(by.get('privileges')?.status, 'ok')
  t.equal(by.get('ip_set kernel support')?.status, 'ok')
  t.match(by.get('iptables flavour')?.detail, /nf_tables|legacy/)
  t.match(by.get('DOCKER-USER chain'), { status: 'warn', fix: /start Docker/ })
  t.equal(inNs(ns, 'ipset', ['list', '-n']), before, 'the throwaway set was destroyed')

  inNs(ns, 'iptables', ['-N', 'DOCKER-USER'])
  const r2 = await runCli(['doctor', '--netns', ns])
  t.equal(r2.code, 0)
  t.match(r2.stdout, /\[ ok \] DOCKER-USER chain: present/)
  t.match(r2.stdout, /doctor: ready/)
})

t.test('CLI with no firewall tools on PATH: exit 1 and how to fix', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'eg-doctor-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // An empty PATH: no tool can run, so nothing is touched anywhere.
  const r = await runCli(['doctor'], { env: { PATH: dir } })
  t.equal(r.code, 1)
  t.match(r.stdout, /\[FAIL\] kernel backend/)
  t.match(r.stdout, /fix: apt-get install/)
})
