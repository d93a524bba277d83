// The dashboard's quarantine controls in a real browser (Debian's chromium through playwright-core)
// against a real `egress-guard server`: an admin quarantines the container of a hit (reason required,
// the form survives the 2-second refresh of the rows), the Fleet view's Quarantines section shows the
// container an agent reports holding, the admin lifts it; a read token gets no buttons and the API
// refuses it anyway; a container name with markup stays text.
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync, readFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser } from 'playwright-core'
import { requires, capabilities } from '../helpers/caps.js'
import { CLI, runCli } from '../helpers/cli.js'
import { freePort } from '../helpers/dnsmasq.js'
import { until } from '../helpers/wait.js'
import { createApiClient } from '../../src/client/api-client.js'

const SHOTS = fileURLToPath(new URL('../../docs/screenshots/', import.meta.url))
const ID = '5e1f00d5e1f00d5e1f00d5e1f00d5e1f00d5e1f00d5e1f00d5e1f00d5e1f00d5'

function start(t: { teardown: (f: () => unknown) => void }, args: string[]): ChildProcess & { out: () => string } {
  const c = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }) as ChildProcess & { out: () => string }
  let out = ''
  c.stdout!.on('data', (d) => (out += String(d)))
  c.stderr!.on('data', (d) => (out += String(d)))
  c.out = () => out
  t.teardown(() => void (c.exitCode === null && c.signalCode === null && c.kill('SIGKILL')))
  return c
}

t.test('quarantine from a hit row, see it held, lift it; the read role gets no buttons', async (t) => {
  if (!requires(t, capabilities.chromium())) return
  const tmp = mkdtempSync(join(tmpdir(), `eg-dashq-${process.pid}-`))
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }))
  mkdirSync(SHOTS, { recursive: true })
  const data = join(tmp, 'data')
  const lists = join(tmp, 'lists')
  mkdirSync(lists)
  writeFileSync(join(lists, 'base.txt'), 'evil.example # miner pool\n')
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const files = { admin: join(tmp, 'admin.token'), read: join(tmp, 'read.token'), agent: join(tmp, 'agent.token') }
  t.equal((await runCli(['token', 'create', '--role', 'admin', '--data', data, '--out', files.admin])).code, 0)
  t.equal((await runCli(['token', 'create', '--role', 'read', '--data', data, '--out', files.read])).code, 0)
  t.equal((await runCli(['token', 'create', '--role', 'agent', '--host', 'dash1', '--data', data, '--out', files.agent])).code, 0)
  const tok = { admin: readFileSync(files.admin, 'utf8').trim(), read: readFileSync(files.read, 'utf8').trim(), agent: readFileSync(files.agent, 'utf8').trim() }
  const server = start(t, ['server', '--data', data, '--blocklists', lists, '--listen', `127.0.0.1:${port}`, '--admin-token-file', files.admin, '--log-level', 'warn'])
  await until('server health', async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.ok === true, 15_000)

  // The agent's side through the API: two hits (one from a container whose name carries markup).
  const agent = createApiClient({ url, token: tok.agent })
  const admin = createApiClient({ url, token: tok.admin })
  const now = new Date().toISOString()
  const hit = (name: string, container: string) => ({
    time: now, lastTime: now, count: 1, client: '172.18.0.5', container: { id: ID, name: container, image: 'shop:1.4', service: 'web' }, name, qtype: 'A',
    action: 'block' as const, entry: { value: 'evil.example', source: 'lists/base.txt:1', reason: 'miner pool', mode: 'block' as const }, answer: 'null',
  })
  await agent.uploadHits('dash1', [hit('evil.example', 'shop-web-1'), hit('x.evil.example', '<img src=x onerror="document.title=1">')])

  const browser: Browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'],
  })
  t.teardown(() => browser.close())
  const page = await (await browser.newContext({ viewport: { width: 1200, height: 900 } })).newPage()
  page.setDefaultTimeout(20_000)
  const problems: string[] = []
  page.on('console', (m) => void (m.type() === 'error' && problems.push(m.text())))
  page.on('pageerror', (e) => problems.push(String(e)))
  const refused = new Set<string>()
  page.on('response', (r) => void (r.status() >= 400 && refused.add(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`)))

  await page.goto(`${url}/`)
  await page.fill('#signin-token', tok.admin)
  await page.click('#signin-form button[type=submit]')
  await page.locator('#who-role', { hasText: 'admin role' }).waitFor()
  await page.locator('#quarantines-summary', { hasText: 'No container is quarantined' }).waitFor()

  await page.click('#nav a[data-view=hits]')
  const row = page.locator('#hits-table tr[data-name="evil.example"]')
  await row.waitFor()
  t.equal(await page.locator('#hits-table img').count(), 0, 'a container name with markup stays text')
  t.equal(await page.isVisible('#quarantine-form'), false, 'no form until asked')
  await row.locator('button.quarantine').click()
  t.equal(await page.inputValue('#quarantine-container'), 'shop-web-1', 'the form holds the hit\'s container')
  t.equal(await page.inputValue('#quarantine-host'), 'dash1', 'and its host')
  // No reason: refused in the page, nothing sent.
  await page.click('#quarantine-form button[type=submit]')
  t.equal(await page.textContent('#quarantine-error'), 'a reason is required (it goes to the audit log)')
  // What is typed survives the rows' refresh (every 2 s).
  await page.fill('#quarantine-reason', 'incident 42: miner download')
  const before = await row.elementHandle()
  await until('the hit rows to be rebuilt', async () => (await before?.evaluate((el) => !el.isConnected)) === true, 10_000)
  t.equal(await page.inputValue('#quarantine-reason'), 'incident 42: miner download', 'the reason is still there after a refresh')
  await page.fill('#quarantine-expires', '4h')
  await page.click('#quarantine-form button[type=submit]')
  await page.locator('#quarantine-result', { hasText: 'Quarantined' }).waitFor()
  t.match(await page.textContent('#quarantine-result'), /^Quarantined shop-web-1 on dash1 \(q-[0-9a-f]{12}\): policy version 2\./)
  t.equal(await page.isVisible('#quarantine-form'), false, 'the form closes')
  const list = await admin.listQuarantines()
  t.same(list.quarantines.map((q) => [q.container, q.host, q.reason, q.actor, q.matched]), [['shop-web-1', 'dash1', 'incident 42: miner download', 'admin', []]], 'the server has it')
  const qid = list.quarantines[0]!.id
  t.ok(list.quarantines[0]!.expires, 'with its expiry')

  // The markup-named container: the API refuses the name (400), the page says why, nothing is added.
  await page.locator('#hits-table tr[data-name="x.evil.example"] button.quarantine').click()
  await page.fill('#quarantine-reason', 'try markup')
  await page.click('#quarantine-form button[type=submit]')
  await page.locator('#quarantine-error:not(:empty)').waitFor()
  t.match(await page.textContent('#quarantine-error'), /container/)
  t.equal((await admin.listQuarantines()).quarantines.length, 1)
  await page.click('#quarantine-cancel')

  // Fleet: no match until the agent reports holding the container; then host/container.
  await page.click('#nav a[data-view=fleet]')
  const qrow = page.locator(`#quarantines-table tr[data-quarantine="${qid}"]`)
  await qrow.waitFor()
  t.match(await qrow.textContent(), /shop-web-1.*dash1.*no match yet.*incident 42: miner download/)
  const applied = await agent.getPolicy()
  t.same(applied.policy?.quarantines?.map((q) => q.id), [qid], 'the agent gets it with the policy')
  await agent.report({ host: 'dash1', version: applied.policy!.version, etag: applied.etag, counts: { entries: 1, domains: 1, nets: 0, v4: 0, v6: 0 }, repairs: 0, drift: [], errors: [], agentVersion: '0.1.0', containers: [{ id: ID, name: 'shop-web-1', quarantineId: qid }] })
  await qrow.locator('.held', { hasText: 'dash1/shop-web-1' }).waitFor()
  t.match(await qrow.textContent(), /dash1\/shop-web-15e1f00d5e1f0/, 'the container it holds, with its short id')
  await page.screenshot({ path: join(SHOTS, 'quarantines.png') })

  // Lift it: a reason is required; then the section is empty again.
  await qrow.locator('button.lift').click()
  await page.click('#lift-form button[type=submit]')
  t.equal(await page.textContent('#lift-error'), 'a reason is required (it goes to the audit log)')
  await page.fill('#lift-reason', 'rebuilt from a clean image')
  await page.click('#lift-form button[type=submit]')
  await page.locator('#lift-result', { hasText: 'Lifted shop-web-1' }).waitFor()
  await qrow.waitFor({ state: 'detached' })
  t.same((await admin.listQuarantines()).quarantines, [])
  const audit = (await admin.audit(10)).events.filter((e) => e.action.startsWith('quarantine.')).map((e) => [e.action, e.actor, e.reason])
  t.same(audit, [['quarantine.remove', 'admin', 'rebuilt from a clean image'], ['quarantine.add', 'admin', 'incident 42: miner download']])

  // The read role: no Quarantine or Lift buttons; the API would refuse it anyway (403).
  await admin.addQuarantine({ container: 'other', reason: 'for the read view' })
  await page.click('#sign-out')
  await page.fill('#signin-token', tok.read)
  await page.click('#signin-form button[type=submit]')
  await page.locator('#who-role', { hasText: 'read role' }).waitFor()
  await page.locator('#quarantines-table tr[data-container="other"]').waitFor()
  t.equal(await page.locator('#quarantines-table button.lift').count(), 0, 'no Lift button for the read role')
  await page.click('#nav a[data-view=hits]')
  await row.waitFor()
  t.equal(await page.locator('#hits-table button.quarantine').count(), 0, 'no Quarantine button for the read role')
  const direct = await fetch(`${url}/v1/quarantines`, { method: 'POST', headers: { authorization: `Bearer ${tok.read}`, 'content-type': 'application/json' }, body: JSON.stringify({ container: 'shop-web-1', reason: 'r' }) })
  t.equal(direct.status, 403, 'the server refuses a read token')

  t.same(problems.filter((m) => !/^Failed to load resource: the server responded with a status of 40[03]/.test(m)), [], 'no script errors or CSP violations')
  t.same([...refused].sort(), ['400 POST /v1/quarantines', '403 GET /v1/tokens'], 'only the refusals this test provoked')
  t.equal(await page.title(), 'egress-guard')
  t.equal(server.exitCode, null, 'the server kept running')
})
