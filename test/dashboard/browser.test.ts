// The dashboard in a real browser (Debian's chromium through playwright-core) against a real
// `egress-guard server` and a real `egress-guard agent` (dry-run backend, embedded sinkhole forwarding
// to a dnsmasq started here): sign in, add a block and watch the host catch up, a real dig produces a
// hit that appears without a reload, remove the block, a validation error, the read role refused, a
// wrong token refused, phone width. Saves a screenshot of each view to docs/screenshots/.
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync, readFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type Page } from 'playwright-core'
import { requires, capabilities } from '../helpers/caps.js'
import { CLI, runCli } from '../helpers/cli.js'
import { dig, freePort, startDnsmasq } from '../helpers/dnsmasq.js'
import { until } from '../helpers/wait.js'

const SHOTS = fileURLToPath(new URL('../../docs/screenshots/', import.meta.url))

function start(t: { teardown: (f: () => unknown) => void }, args: string[]): ChildProcess & { out: () => string } {
  const c = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }) as ChildProcess & { out: () => string }
  let out = ''
  c.stdout!.on('data', (d) => (out += String(d)))
  c.stderr!.on('data', (d) => (out += String(d)))
  c.out = () => out
  t.teardown(() => void (c.exitCode === null && c.signalCode === null && c.kill('SIGKILL')))
  return c
}

/** Text of the fleet row of `host` (state badge, versions), as the browser shows it. */
const fleetRow = (page: Page, host: string) => page.locator(`#fleet-table tr[data-host="${host}"]`)

t.test('dashboard in chromium against a real server and agent', async (t) => {
  if (!requires(t, capabilities.chromium(), capabilities.tool('dig'), capabilities.tool('dnsmasq'))) return
  const tmp = mkdtempSync(join(tmpdir(), `eg-dash-${process.pid}-`))
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }))
  mkdirSync(SHOTS, { recursive: true })
  const data = join(tmp, 'data')
  const lists = join(tmp, 'lists')
  mkdirSync(lists)
  writeFileSync(join(lists, 'base.txt'), 'evil.example # miner pool\n*.ads.example # ad network\n203.0.113.66 # known C2 address\nxss.example # <img src=x onerror="document.title=\'pwned\'"> markup in a reason\nbidi.example # invoice \u202egnp.exe\n')
  mkdirSync(join(lists, 'profiles'))
  writeFileSync(join(lists, 'profiles', 'web.txt'), 'mode=learn\napi.example port=443\n*.cdn.example\n')
  writeFileSync(join(tmp, 'hosts'), '127.0.0.1 localhost\n')
  const dns = await startDnsmasq(t, { hosts: { 'blocked.example': ['198.51.100.20'], 'ok.example': ['198.51.100.10'] } })
  const port = await freePort()
  const dnsPort = await freePort()
  const url = `http://127.0.0.1:${port}`
  const files = { admin: join(tmp, 'admin.token'), read: join(tmp, 'read.token'), agent: join(tmp, 'agent.token') }
  t.equal((await runCli(['token', 'create', '--role', 'admin', '--data', data, '--out', files.admin])).code, 0)
  t.equal((await runCli(['token', 'create', '--role', 'read', '--name', 'viewer', '--data', data, '--out', files.read])).code, 0)
  t.equal((await runCli(['token', 'create', '--role', 'agent', '--host', 'dash1', '--data', data, '--out', files.agent])).code, 0)
  const tok = { admin: readFileSync(files.admin, 'utf8').trim(), read: readFileSync(files.read, 'utf8').trim() }
  // debug: the most the server ever logs; the token must not be in it.
  const server = start(t, ['server', '--data', data, '--blocklists', lists, '--listen', `127.0.0.1:${port}`, '--admin-token-file', files.admin, '--log-level', 'debug'])
  await until('server health', async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.ok === true, 15_000)
  const agent = start(t, ['agent', '--server', url, '--token-file', files.agent, '--host', 'dash1', '--state-dir', join(tmp, 'state'), '--backend', 'dry-run',
    '--hosts-file', join(tmp, 'hosts'), '--upstream', `127.0.0.1:${dns.port}`, '--sinkhole-listen', `127.0.0.1:${dnsPort}`, '--hit-log', join(tmp, 'hits.jsonl'),
    '--report-interval', '1s', '--wait', '5', '--log-level', 'info'])
  t.teardown(() => void agent.kill('SIGTERM'))
  await until('agent enforces the policy', () => /"policy enforced"/.test(agent.out()), 20_000).catch((e: Error) => t.fail(`${e.message}\n${agent.out()}`))

  // Before the block: the name resolves through the sinkhole to dnsmasq's address.
  t.same((await dig('127.0.0.1', dnsPort, 'blocked.example')).answers.map((a) => a[2]), ['198.51.100.20'], 'blocked.example resolves before the block')

  // The page itself: CSP on every file, no data without a token.
  const index = await fetch(`${url}/`)
  t.equal(index.status, 200)
  t.match(index.headers.get('content-security-policy') ?? '', /default-src 'self'/, 'strict CSP on the page')
  t.notMatch(await index.text(), /<script>|<style>| style=| on[a-z]+=/, 'no inline script, style or handlers')
  t.equal((await fetch(`${url}/ui/app.js`)).headers.get('content-type'), 'text/javascript; charset=utf-8')
  t.equal((await fetch(`${url}/v1/hosts`)).status, 401, 'the API still needs a token')

  const browser: Browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'],
  })
  t.teardown(() => browser.close())
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 760 } })
  const page = await ctx.newPage()
  page.setDefaultTimeout(20_000)
  const problems: string[] = []
  page.on('console', (m) => void (m.type() === 'error' && problems.push(m.text())))
  page.on('pageerror', (e) => problems.push(String(e)))
  const requested: string[] = []
  page.on('request', (r) => requested.push(r.url()))
  // Every refused API call, to check that only the ones this test provokes failed (no polling errors).
  const refused = new Set<string>()
  page.on('response', (r) => void (r.status() >= 400 && refused.add(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`)))

  await page.goto(`${url}/`)
  await page.locator('#signin-token').waitFor()

  // A wrong token: refused with a clear message, still on the sign-in form.
  await page.fill('#signin-token', `eg_${'x'.repeat(20)}wrongwrongwrongwrongwrong`)
  await page.click('#signin-form button[type=submit]')
  await page.locator('#signin-error', { hasText: '401' }).waitFor()
  t.match(await page.textContent('#signin-error'), /refused \(401\)/, 'a wrong token is refused with a message')
  t.equal(await page.isVisible('#view-fleet'), false, 'no view without a valid token')

  // Admin: the fleet shows the host in sync with the current version.
  await page.fill('#signin-token', tok.admin)
  await page.click('#signin-form button[type=submit]')
  await fleetRow(page, 'dash1').locator('.badge', { hasText: 'in-sync' }).waitFor()
  t.match(await page.textContent('#who-role'), /admin role/)
  const v0 = Number(/Current policy v(\d+)/.exec((await page.textContent('#fleet-summary')) ?? '')?.[1])
  t.ok(v0 >= 1, `current version v${v0} shown`)
  t.match(await fleetRow(page, 'dash1').textContent(), new RegExp(`v${v0} / v${v0}`), 'applied version = current')
  t.notMatch(await fleetRow(page, 'dash1').textContent(), /^\s*$/)
  await page.screenshot({ path: join(SHOTS, 'fleet.png') })

  // Policy: file entries with their file:line; add a block.
  await page.click('#nav a[data-view=policy]')
  await page.locator('#policy-table tr[data-value="evil.example"]').waitFor()
  t.match(await page.locator('#policy-table tr[data-value="evil.example"]').textContent(), /miner pool.*base\.txt:1/, 'file entry with reason and file:line')
  // A reason is data from a file: shown as text, never parsed as markup.
  t.match(await page.locator('#policy-table tr[data-value="xss.example"]').textContent(), /<img src=x onerror=/, 'markup in a reason is shown as text')
  t.equal(await page.locator('#policy-table img').count(), 0, 'and does not become an element')
  // Profiles: name, mode, number of destination lines and the file, below the entries.
  const prof = page.locator('#profiles-table tr[data-profile="web"]')
  await prof.waitFor()
  t.match(await prof.textContent(), /^web\s*learn\s*2\s*lists\/profiles\/web\.txt$/, 'the profile with its mode, lines and file')
  t.match(await page.textContent('#profiles-summary'), /1 profile;/)
  // A bidi override in a reason would show "invoice exe.png": it is shown escaped instead.
  const bidi = (await page.locator('#policy-table tr[data-value="bidi.example"]').textContent()) ?? ''
  t.ok(bidi.includes('invoice \\u202egnp.exe'), `a bidi override is shown escaped: ${JSON.stringify(bidi)}`)
  t.notOk(bidi.includes('\u202e'), 'and is not in the page raw')
  await page.fill('#add-value', 'blocked.example')
  await page.fill('#add-reason', 'incident 42: exfiltration')
  await page.fill('#add-expires', '4h')
  await page.click('#add-form button[type=submit]')
  await page.locator('#add-result', { hasText: 'policy version' }).waitFor()
  const v1 = Number(/policy version (\d+)/.exec((await page.textContent('#add-result')) ?? '')?.[1])
  t.ok(v1 > v0, `the add made version ${v1}`)
  const row = page.locator('#policy-table tr[data-value="blocked.example"]')
  await row.waitFor()
  t.match(await row.textContent(), /incident 42: exfiltration.*API, pushed by admin/, 'API entry with reason and who pushed it')
  t.match(await row.textContent(), /block/)
  // Search narrows the list.
  await page.fill('#policy-search', 'incident 42')
  await until('search applied', async () => (await page.locator('#policy-table tbody tr').count()) === 1, 10_000).catch((e: Error) => t.fail(e.message))
  t.equal(await page.locator('#policy-table tbody tr').count(), 1, 'search finds only the new entry')
  await page.fill('#policy-search', '')
  await page.locator('#policy-table tr[data-value="evil.example"]').waitFor()
  await page.locator('#propagation', { hasText: 'propagation complete' }).waitFor({ timeout: 30_000 }).catch((e: Error) => t.fail(`propagation: ${e.message}`))
  await page.screenshot({ path: join(SHOTS, 'policy.png'), fullPage: true })

  // Fleet: the host caught up with the new version.
  await page.click('#nav a[data-view=fleet]')
  await until('host on the new version', async () => new RegExp(`v${v1} / v${v1}`).test((await fleetRow(page, 'dash1').textContent()) ?? ''), 30_000).catch((e: Error) => t.fail(`${e.message}\n${agent.out().slice(-3000)}`))
  t.equal(await fleetRow(page, 'dash1').getAttribute('data-state'), 'in-sync', 'in-sync at the new version')

  // Hits: open the view first, then a real lookup; the hit appears without a reload.
  await page.click('#nav a[data-view=hits]')
  await page.locator('#hits-chart svg').waitFor()
  const navigations: string[] = []
  page.on('framenavigated', (f) => navigations.push(f.url()))
  const blocked = await dig('127.0.0.1', dnsPort, 'blocked.example')
  t.same(blocked.answers.map((a) => a[2]), ['0.0.0.0'], 'the sinkhole answers the blocked name with 0.0.0.0')
  t.same((await dig('127.0.0.1', dnsPort, 'ok.example')).answers.map((a) => a[2]), ['198.51.100.10'], 'an unlisted name still resolves')
  const hitRow = page.locator('#hits-table tr[data-name="blocked.example"]')
  await hitRow.waitFor({ timeout: 40_000 }).catch((e: Error) => t.fail(`hit row: ${e.message}\n${agent.out().slice(-3000)}`))
  const hitText = (await hitRow.textContent()) ?? ''
  t.match(hitText, /dash1/, 'the hit names the host')
  t.match(hitText, /client 127\.0\.0\.1/, 'and the client address')
  t.match(hitText, /incident 42: exfiltration/, 'and the reason')
  t.same(navigations.filter((u) => !u.startsWith(`${url}/#`)), [], 'no reload happened')
  // A few more lookups (a file entry, a wildcard, the markup reason) for the chart and the screenshot.
  for (const n of ['evil.example', 'cdn.ads.example', 'tracker.ads.example', 'xss.example']) await dig('127.0.0.1', dnsPort, n)
  await page.locator('#hits-table tr[data-name="xss.example"]').waitFor({ timeout: 40_000 }).catch((e: Error) => t.fail(`more hits: ${e.message}`))
  t.equal(await page.locator('#hits-table img').count(), 0, 'a hit\'s reason is text too')
  // A name as a hostile container can ask it: an OSC title (ESC ... BEL), markup and a C1 CSI byte.
  await dig('127.0.0.1', dnsPort, '\\027]0;pwned\\007<b>bold</b>\\155.evil.example')
  const hostile = page.locator('#hits-table tbody tr', { hasText: 'bold</b>' })
  await hostile.waitFor({ timeout: 40_000 }).catch((e: Error) => t.fail(`hostile hit row: ${e.message}`))
  const hostileText = (await hostile.textContent()) ?? ''
  t.ok(hostileText.includes('\\x1b]0;pwned\\x07<b>bold</b>\\x9b.evil.example'), `the name is shown escaped: ${JSON.stringify(hostileText)}`)
  // eslint-disable-next-line no-control-regex
  t.notOk(/[\x00-\x1f\x7f-\x9f]/.test(hostileText), 'no raw control character in the page')
  t.equal(await page.locator('#hits-table b').count(), 0, 'the markup in the name is text, not an element')
  t.ok((await page.locator('#hits-chart svg rect.bar').count()) >= 1, 'the chart has a bar')
  t.match(await page.textContent('#hits-chart-caption'), /[1-9]\d* hits? in the last hour/)
  // Filters go to the server: a host that does not exist shows nothing, clearing brings it back.
  await page.fill('#hits-host', 'no-such-host')
  await until('filtered out', async () => (await page.locator('#hits-table tbody tr').count()) === 0, 10_000).catch((e: Error) => t.fail(e.message))
  await page.fill('#hits-host', 'dash1')
  await page.fill('#hits-name', 'blocked.example')
  await hitRow.waitFor()
  t.pass('filter by host and name')
  await page.fill('#hits-host', '')
  await page.fill('#hits-name', '')
  await page.locator('#hits-table tr[data-name="evil.example"]').waitFor()
  await page.screenshot({ path: join(SHOTS, 'hits.png') })

  // A bad entry: the server's validation message next to the value field; nothing added.
  await page.click('#nav a[data-view=policy]')
  const before = await (await fetch(`${url}/v1/entries?source=api`, { headers: { authorization: `Bearer ${tok.admin}` } })).json() as { version: number; entries: unknown[] }
  await page.fill('#add-value', 'bad name;rm')
  await page.fill('#add-reason', 'should fail')
  await page.click('#add-form button[type=submit]')
  await page.locator('#add-value-error:not(:empty)').waitFor()
  t.match(await page.textContent('#add-value-error'), /bad name;rm/, 'validation error shown next to the value field')
  t.equal(await page.getAttribute('#add-value', 'aria-invalid'), 'true')
  const after = await (await fetch(`${url}/v1/entries?source=api`, { headers: { authorization: `Bearer ${tok.admin}` } })).json() as { version: number; entries: unknown[] }
  t.equal(after.version, before.version, 'a bad entry changes nothing')
  t.equal(after.entries.length, before.entries.length)
  await page.fill('#add-value', '')
  await page.fill('#add-reason', '')

  // Remove the block with a reason; the host catches up and the name resolves again.
  await row.locator('button.remove').click()
  await row.locator('.row-form input').fill('incident 42 closed')
  await row.locator('.row-form button[type=submit]').click()
  await page.locator('#add-result', { hasText: 'Removed' }).waitFor()
  const v2 = Number(/policy version (\d+)/.exec((await page.textContent('#add-result')) ?? '')?.[1])
  t.ok(v2 > v1, `the removal made version ${v2}`)
  await page.locator('#policy-table tr[data-value="blocked.example"]').waitFor({ state: 'detached' })
  await page.click('#nav a[data-view=fleet]')
  await until('host on the version after removal', async () => new RegExp(`v${v2} / v${v2}`).test((await fleetRow(page, 'dash1').textContent()) ?? ''), 30_000).catch((e: Error) => t.fail(e.message))
  await until('name resolves again', async () => (await dig('127.0.0.1', dnsPort, 'blocked.example')).answers.some((a) => a[2] === '198.51.100.20'), 20_000).catch((e: Error) => t.fail(e.message))
  t.pass('blocked.example resolves again after the removal')

  // Audit: who, what, when, why.
  await page.click('#nav a[data-view=audit]')
  const addEv = page.locator('#audit-table tr[data-action="entry.add"]', { hasText: 'blocked.example' })
  const rmEv = page.locator('#audit-table tr[data-action="entry.remove"]', { hasText: 'blocked.example' })
  await addEv.waitFor()
  t.match(await addEv.textContent(), /admin.*entry\.add.*blocked\.example.*incident 42: exfiltration/, 'audit: the add, by whom, why')
  t.match(await rmEv.textContent(), /admin.*entry\.remove.*blocked\.example.*incident 42 closed/, 'audit: the removal and its reason')
  await page.screenshot({ path: join(SHOTS, 'audit.png') })

  // The token never went into a URL, and the server did not log it.
  t.same(requested.filter((u) => u.includes(tok.admin) || u.includes('token=')), [], 'no token in any URL')
  t.notOk(page.url().includes(tok.admin))
  t.notOk(server.out().includes(tok.admin), 'the server log does not contain the token')

  // The read role: can look, and an add is refused with the role message; nothing changes.
  await page.click('#sign-out')
  await page.locator('#signin-token').waitFor()
  t.equal(await page.evaluate('sessionStorage.length'), 0, 'sign-out forgets the token')
  await page.fill('#signin-token', tok.read)
  await page.click('#signin-form button[type=submit]')
  await page.locator('#who-role', { hasText: 'read role' }).waitFor()
  await page.click('#nav a[data-view=policy]')
  await page.locator('#policy-table tr[data-value="evil.example"]').waitFor()
  await page.fill('#add-value', 'another.example')
  await page.fill('#add-reason', 'read role tries')
  await page.click('#add-form button[type=submit]')
  await page.locator('#add-error:not(:empty)').waitFor()
  t.equal(await page.textContent('#add-error'), 'your token has the read role; adding entries needs admin', 'the read role is refused with a clear message')
  const afterRead = await (await fetch(`${url}/v1/entries?q=another.example`, { headers: { authorization: `Bearer ${tok.admin}` } })).json() as { entries: unknown[] }
  t.equal(afterRead.entries.length, 0, 'nothing was added')

  // Phone width: same data as cards, no horizontal scrolling.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1, isMobile: true, hasTouch: true })
  const p2 = await phone.newPage()
  p2.on('pageerror', (e) => problems.push(String(e)))
  await p2.goto(`${url}/#fleet`)
  // An agent token is turned away: agents may not read the fleet.
  await p2.fill('#signin-token', readFileSync(files.agent, 'utf8').trim())
  await p2.click('#signin-form button[type=submit]')
  await p2.locator('#signin-error', { hasText: '403' }).waitFor()
  t.match(await p2.textContent('#signin-error'), /agent token \(403\)/, 'an agent token is refused with a message')
  await p2.fill('#signin-token', tok.read)
  await p2.click('#signin-form button[type=submit]')
  await fleetRow(p2, 'dash1').waitFor()
  t.ok(await p2.evaluate('document.documentElement.scrollWidth <= window.innerWidth'), 'no horizontal overflow at 390px')
  t.equal(await p2.locator('#fleet-table thead').isVisible(), false, 'tables become labelled cards')
  t.match(await fleetRow(p2, 'dash1').textContent(), /State: ?in-sync|in-sync/)
  await p2.screenshot({ path: join(SHOTS, 'phone.png') })

  // The read token revoked while the page is open: the next poll returns to the sign-in form. The
  // first page holds that token too, so a 401 of its own polls after this point is expected.
  const refusedBeforeRevoke = [...refused].sort()
  const admin = { authorization: `Bearer ${tok.admin}` }
  const { tokens } = (await (await fetch(`${url}/v1/tokens`, { headers: admin })).json()) as { tokens: Array<{ id: string; name?: string }> }
  const viewer = tokens.find((x) => x.name === 'viewer')
  t.equal((await fetch(`${url}/v1/tokens/${viewer?.id}`, { method: 'DELETE', headers: admin })).status, 204, 'read token revoked')
  await p2.locator('#signin-error', { hasText: 'no longer accepts' }).waitFor()
  t.equal(await p2.isVisible('#view-fleet'), false, 'a revoked token ends the session')
  t.equal(await p2.evaluate('sessionStorage.length'), 0)

  // The browser logs each refused fetch as a console error; those are checked one by one above and here.
  t.same(problems.filter((m) => !/^Failed to load resource: the server responded with a status of 40[013]/.test(m)), [], 'no script errors or CSP violations in the console')
  t.same(refusedBeforeRevoke, ['400 POST /v1/entries', '401 GET /v1/hosts', '403 GET /v1/tokens', '403 POST /v1/entries'], 'only the refusals this test provoked')
  t.equal(await page.title(), 'egress-guard', 'no markup from a blocklist ever ran')
  t.equal(server.exitCode, null, 'the server kept running')
  t.equal(agent.exitCode, null, 'the agent kept running')
})
