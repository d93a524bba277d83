// The dashboard's static routes through inject(): served without a token but holding no data, every
// answer with the strict CSP, hidden from the OpenAPI document; a build without the files says so.
import t from 'tap'
import { makeServer } from '../server/fixtures/server.js'
import dashboardRoutes, { DASHBOARD_CSP, findUiDir, loadUiFiles } from '../../src/server/routes/dashboard.js'
import Fastify from 'fastify'

t.test('page, script and styles: no token, strict headers, right types', async (t) => {
  const f = await makeServer(t)
  for (const [url, type] of [['/', /text\/html/], ['/ui/', /text\/html/], ['/ui/app.js', /text\/javascript/], ['/ui/printable.js', /text\/javascript/], ['/ui/style.css', /text\/css/]] as const) {
    const r = await f.app.inject({ url })
    t.equal(r.statusCode, 200, url)
    t.match(r.headers['content-type'], type, `${url} content type`)
    t.equal(r.headers['content-security-policy'], DASHBOARD_CSP, `${url} CSP`)
    t.equal(r.headers['x-content-type-options'], 'nosniff')
    t.equal(r.headers['x-frame-options'], 'DENY')
    t.equal(r.headers['referrer-policy'], 'no-referrer')
  }
  t.match(DASHBOARD_CSP, /default-src 'self'/)
  t.notMatch(DASHBOARD_CSP, /unsafe-inline|unsafe-eval|\*/, 'no inline script or style, no wildcard origins')
  const html = (await f.app.inject({ url: '/' })).body
  t.notMatch(html, /<script>|<style|\sstyle=|\son[a-z]+=/i, 'no inline script, style or handler attributes')
  t.notMatch(html, /https?:\/\//, 'no external asset')
  t.match(html, /<script type="module" src="\/ui\/app.js">/)
  const js = (await f.app.inject({ url: '/ui/app.js' })).body
  t.notMatch(js, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function/, 'API values never become markup or code')
  t.notMatch(js, /[?&]token=|localStorage/, 'the token is never put in a URL nor kept beyond the tab')
  t.equal((await f.app.inject({ url: '/favicon.ico' })).statusCode, 204)
  t.equal((await f.app.inject({ url: '/ui/../admin.token' })).statusCode, 404, 'no other file is reachable')
  t.equal((await f.app.inject({ url: '/ui/secret.json' })).statusCode, 404)
  t.equal((await f.app.inject({ url: '/v1/hosts' })).statusCode, 401, 'the data still needs a token')
  const doc = (await f.app.inject({ url: '/openapi.json' })).json() as { paths: Record<string, unknown> }
  t.notOk(Object.keys(doc.paths).some((p) => p === '/' || p.startsWith('/ui')), 'static routes are not part of the API document')
})

t.test('the files are found next to the routes or in src', async (t) => {
  const dir = findUiDir()
  t.ok(dir, 'a ui directory exists')
  t.same([...loadUiFiles(dir).keys()].sort(), ['app.js', 'index.html', 'printable.js', 'style.css'])
})

t.test('a build without the files answers 404 with a reason, never a crash', async (t) => {
  const app = Fastify()
  dashboardRoutes(app, { files: new Map() })
  t.teardown(() => app.close())
  const r = await app.inject({ url: '/' })
  t.equal(r.statusCode, 404)
  t.match(r.body, /dashboard files are missing/)
  t.equal(r.headers['content-security-policy'], DASHBOARD_CSP)
})
