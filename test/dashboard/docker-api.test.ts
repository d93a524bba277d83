// The dashboard's Docker API badge in a real browser (chromium through playwright-core) against a real
// `egress-guard server`: a host whose agent reported an exposed API shows a red "exposed" badge with
// its listener and why, the summary counts it, a unix-only host shows "unix only", an agent that
// found no dockerd shows "-". The detail (agent-supplied text) is shown as text, never as markup.
import t from 'tap'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { chromium, type Browser } from 'playwright-core'
import { capabilities, requires } from '../helpers/caps.js'
import { CLI, runCli } from '../helpers/cli.js'
import { freePort } from '../helpers/dnsmasq.js'
import { until } from '../helpers/wait.js'

const report = (host: string, dockerApi?: unknown) => ({
  host, version: 1, etag: 'x', counts: { entries: 0, domains: 0, nets: 0, v4: 0, v6: 0 }, repairs: 0, drift: [], errors: [], agentVersion: '0.1.0',
  ...(dockerApi ? { dockerApi } : {}),
})

t.test('the fleet view shows each host\'s Docker API verdict', async (t) => {
  if (!requires(t, capabilities.chromium())) return
  const tmp = mkdtempSync(join(tmpdir(), `eg-dash-api-${process.pid}-`))
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }))
  const data = join(tmp, 'data')
  const tokenFile = (name: string) => join(tmp, `${name}.token`)
  t.equal((await runCli(['token', 'create', '--role', 'admin', '--data', data, '--out', tokenFile('admin')])).code, 0)
  t.equal((await runCli(['token', 'create', '--role', 'read', '--data', data, '--out', tokenFile('read')])).code, 0)
  for (const h of ['exposed1', 'unix1', 'nodocker1']) t.equal((await runCli(['token', 'create', '--role', 'agent', '--host', h, '--data', data, '--out', tokenFile(h)])).code, 0)
  const tok = (name: string) => readFileSync(tokenFile(name), 'utf8').trim()
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const server = spawn(process.execPath, [CLI, 'server', '--data', data, '--blocklists', tmp, '--listen', `127.0.0.1:${port}`, '--admin-token-file', tokenFile('admin'), '--log-level', 'warn'], { stdio: 'ignore' })
  t.teardown(() => void (server.exitCode === null && server.kill('SIGKILL')))
  await until('server health', async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.ok === true, 15_000)
  const post = async (h: string, dockerApi?: unknown) =>
    (await fetch(`${url}/v1/report`, { method: 'POST', headers: { authorization: `Bearer ${tok(h)}`, 'content-type': 'application/json' }, body: JSON.stringify(report(h, dockerApi)) })).status
  t.equal(await post('exposed1', { verdict: 'fail', listeners: ['[::]:2375'], detail: 'dockerd (pid 7) listens on [::]:2375 without --tlsverify <b>bold?</b>' }), 204)
  t.equal(await post('unix1', { verdict: 'ok', listeners: [], detail: 'dockerd (pid 9): API on the unix socket only' }), 204)
  t.equal(await post('nodocker1'), 204)

  const browser: Browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'] })
  t.teardown(() => browser.close())
  const page = await browser.newPage()
  page.setDefaultTimeout(20_000)
  await page.goto(`${url}/`)
  await page.fill('#signin-token', tok('read'))
  await page.click('#signin-form button[type=submit]')
  const row = (h: string) => page.locator(`#fleet-table tr[data-host="${h}"]`)
  await row('exposed1').waitFor()
  const cell = row('exposed1').locator('td[data-docker-api]')
  t.equal(await cell.getAttribute('data-docker-api'), 'fail')
  t.equal(await cell.locator('.badge.api-fail').textContent(), 'exposed', 'a red "exposed" badge')
  t.match(await cell.textContent(), /\[::\]:2375[\s\S]*without --tlsverify <b>bold\?<\/b>/, 'the listener and why, as text')
  t.equal(await cell.locator('b').count(), 0, 'agent text is never markup')
  t.equal(await row('unix1').locator('.badge.api-ok').textContent(), 'unix only')
  t.equal((await row('nodocker1').locator('td[data-label="Docker API"]').textContent())?.trim(), '-')
  t.match(await page.textContent('#fleet-summary'), /1 with the Docker API exposed/, 'counted in the summary')
})
