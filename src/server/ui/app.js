// egress-guard dashboard: a dependency-free ES module that renders the fleet, policy, hits and audit
// views from the /v1 API. Every value from the API goes into the page as text (textContent, SVG
// attributes), never as markup: names, reasons and sources come from blocklists, agents and DNS.
// Text goes through printable() (the CLI's rule too): a control, bidi or other hidden character shows
// as `\x1b` / `\u202e`, so a name reads as what it is. The token lives in sessionStorage (this tab
// only) and travels only in the Authorization header.

import { printable } from './printable.js'

const TOKEN_KEY = 'egress-guard.token'
const ROLE_KEY = 'egress-guard.role'
const VIEWS = ['fleet', 'policy', 'hits', 'audit']
/** Poll periods (ms). Short enough to watch a push propagate; the API's rate limit is 600/min per token. */
const POLL = { fleet: 2000, policy: 5000, hits: 2000, audit: 5000 }
const HIT_WINDOW_MS = 60 * 60 * 1000
const HIT_BUCKETS = 30

const $ = (id) => document.getElementById(id)

/** Attributes a person reads (tooltips, screen readers): escaped like text. data-* keep exact values. */
const READ_ATTRS = new Set(['title', 'aria-label', 'placeholder'])

/** h('td', {class: 'x', 'data-label': 'Host'}, 'text', node...): build elements, children as text. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue
    if (k === 'text') el.textContent = printable(v)
    else el.setAttribute(k, v === true ? '' : READ_ATTRS.has(k) ? printable(v) : String(v))
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue
    el.append(c instanceof Node ? c : document.createTextNode(printable(c)))
  }
  return el
}

/** Set an element's text (messages that quote server values), escaped like every other text. */
function setText(el, text) {
  el.textContent = printable(text ?? '')
}

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag)
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v))
  if (text !== undefined) el.textContent = text
  return el
}

// ---- session ---------------------------------------------------------------------------------------

const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY)
  },
  get role() {
    return sessionStorage.getItem(ROLE_KEY) ?? 'read'
  },
  set(token, role) {
    sessionStorage.setItem(TOKEN_KEY, token)
    sessionStorage.setItem(ROLE_KEY, role)
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY)
    sessionStorage.removeItem(ROLE_KEY)
  },
}

class ApiError extends Error {
  constructor(status, body) {
    super(body?.message ?? `HTTP ${status}`)
    this.status = status
    this.body = body
  }
}

/** One API call. Throws ApiError with the server's {statusCode, code, message, details}. */
async function api(method, path, { body, token = session.token } = {}) {
  const headers = { accept: 'application/json' }
  if (token) headers.authorization = `Bearer ${token}`
  if (body !== undefined) headers['content-type'] = 'application/json'
  let res
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store', credentials: 'omit' })
  } catch {
    throw new ApiError(0, { message: 'the server cannot be reached' })
  }
  const text = await res.text()
  let data
  try {
    data = text ? JSON.parse(text) : undefined
  } catch {
    data = { message: text.slice(0, 200) }
  }
  if (!res.ok) throw new ApiError(res.status, data)
  return data
}

/** What to tell the person for a refused call; `doing` names the action ("adding entries"). */
function refusal(e, doing) {
  if (e.status === 401) return 'the server no longer accepts this token (401: unknown or revoked); sign in again'
  if (e.status === 403) return `your token has the ${session.role} role; ${doing} needs admin`
  if (e.status === 429) return 'too many requests (429); retrying shortly'
  if (e.status === 0) return e.message
  return e.message
}

function banner(text, kind = 'warn') {
  const b = $('banner')
  setText(b, text)
  b.hidden = !text
  b.className = `banner ${kind === 'error' ? 'error' : ''}`
}

/** A poll that failed with 401 ends the session: the token was revoked while the page was open. */
function pollFailed(e) {
  if (e.status === 401) {
    signOut('The server no longer accepts this token (401: unknown or revoked). Sign in again.')
    return
  }
  banner(`Could not refresh: ${refusal(e, 'this')}`, 'error')
}

// ---- formatting ------------------------------------------------------------------------------------

function ago(iso) {
  const ms = Date.now() - Date.parse(iso)
  if (!Number.isFinite(ms)) return ''
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 60) return `${s} s ago`
  if (s < 3600) return `${Math.round(s / 60)} min ago`
  if (s < 86400) return `${Math.round(s / 3600)} h ago`
  return `${Math.round(s / 86400)} d ago`
}

function when(iso) {
  if (!iso) return ''
  const d = new Date(iso)
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString()
}

function timeCell(iso, label) {
  return h('td', { 'data-label': label }, h('time', { datetime: iso, title: iso }, when(iso)), h('span', { class: 'sub' }, ago(iso)))
}

/** The entry as written in a blocklist: `@@` for allow, `*.` for names under a domain. */
function written(e) {
  return `${e.allow ? '@@' : ''}${e.subdomainsOnly ? '*.' : ''}${e.value}`
}

function badge(state) {
  return h('span', { class: `badge ${state}` }, state)
}

/** The Docker API verdict as a badge with what was found under it; '-' when the agent found no dockerd. */
const API_LABEL = { fail: 'exposed', warn: 'TCP', ok: 'unix only' }
function dockerApiCell(d) {
  if (!d) return h('td', { 'data-label': 'Docker API' }, '-')
  return h(
    'td',
    { 'data-label': 'Docker API', 'data-docker-api': d.verdict },
    h('span', { class: `badge api-${d.verdict}` }, API_LABEL[d.verdict] ?? d.verdict),
    d.listeners.length ? h('span', { class: 'sub mono' }, d.listeners.join(', ')) : [],
    d.verdict === 'ok' ? [] : h('span', { class: 'sub' }, d.detail),
  )
}

// ---- views -----------------------------------------------------------------------------------------

let current = 'signin'
let timer
let propagationTarget
let propagationDone = false

function show(view) {
  current = view
  for (const v of ['signin', ...VIEWS]) $(`view-${v}`).hidden = v !== view
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.view === view) a.setAttribute('aria-current', 'page')
    else a.removeAttribute('aria-current')
  }
  clearTimeout(timer)
  if (view !== 'signin') void tick()
}

/** Refresh the current view now, then again after its period (one timer, restarted on view change). */
async function tick() {
  const view = current
  clearTimeout(timer)
  try {
    await refresh[view]()
    // Only until every host has caught up: after that the line stays as it was, without polling.
    if (propagationTarget !== undefined && !propagationDone && view !== 'fleet') await refreshPropagation()
    if ($('banner').classList.contains('error')) banner('')
  } catch (e) {
    pollFailed(e)
  }
  if (current === view && session.token) timer = setTimeout(tick, POLL[view])
}

const refresh = {
  async fleet() {
    const d = await api('GET', '/v1/hosts')
    renderFleet(d)
    renderPropagation(d)
    // A server from before quarantines answers 404: no section then.
    renderQuarantines(await api('GET', '/v1/quarantines').catch((e) => (e.status === 404 ? undefined : Promise.reject(e))))
  },
  async policy() {
    const q = $('policy-search').value.trim()
    const source = $('policy-source').value
    const params = new URLSearchParams()
    if (q) params.set('q', q)
    if (source) params.set('source', source)
    const d = await api('GET', `/v1/entries${params.size ? `?${params}` : ''}`)
    renderPolicy(d, q || source)
    // A server from before profiles answers 404: no section then, the rest of the view still works.
    renderProfiles(await api('GET', '/v1/profiles').catch((e) => (e.status === 404 ? undefined : Promise.reject(e))))
  },
  hits: () => refreshHits(),
  async audit() {
    renderAudit(await api('GET', '/v1/audit?limit=200'))
  },
}

function renderFleet(d) {
  const tbody = $('fleet-table').tBodies[0]
  const counts = { 'in-sync': 0, behind: 0, silent: 0, drift: 0 }
  tbody.replaceChildren(
    ...d.hosts.map((x) => {
      counts[x.state] = (counts[x.state] ?? 0) + 1
      const lag = d.current.version - x.version
      const problems = [...x.drift.map((s) => h('span', { class: 'sub' }, `drift: ${s}`)), ...x.errors.map((s) => h('span', { class: 'sub' }, `error: ${s}`))]
      return h(
        'tr',
        { 'data-host': x.host, 'data-state': x.state },
        h('td', { 'data-label': 'Host', class: 'mono' }, x.host),
        h('td', { 'data-label': 'State' }, badge(x.state)),
        h(
          'td',
          { 'data-label': 'Applied / current', class: 'version' },
          `v${x.version} / v${d.current.version}`,
          h('span', { class: 'sub' }, x.etag === d.current.etag ? 'current policy' : lag > 0 ? `${lag} version${lag === 1 ? '' : 's'} behind` : 'different content'),
        ),
        timeCell(x.lastSeen, 'Last seen'),
        h('td', { 'data-label': 'Entries' }, String(x.counts.entries), h('span', { class: 'sub' }, `${x.counts.domains} names, ${x.counts.nets} nets`)),
        h('td', { 'data-label': 'Repairs' }, String(x.repairs)),
        h('td', { 'data-label': 'Drift / errors' }, problems.length ? problems : 'none'),
        dockerApiCell(x.dockerApi),
        h('td', { 'data-label': 'Agent', class: 'mono' }, x.agentVersion),
      )
    }),
  )
  $('fleet-empty').hidden = d.hosts.length > 0
  const parts = Object.entries(counts).filter(([, n]) => n > 0).map(([s, n]) => `${n} ${s}`)
  const exposed = d.hosts.filter((x) => x.dockerApi?.verdict === 'fail').length
  if (exposed) parts.push(`${exposed} with the Docker API exposed`)
  $('fleet-summary').textContent = `Current policy v${d.current.version} · ${d.hosts.length} host${d.hosts.length === 1 ? '' : 's'}${parts.length ? `: ${parts.join(', ')}` : ''}`
}

/** After a change: how many hosts run the version it made. Cleared once every host has caught up. */
function renderPropagation(d) {
  const box = $('propagation')
  if (propagationTarget === undefined) {
    box.hidden = true
    return
  }
  const fresh = d.hosts.filter((x) => x.state !== 'silent')
  const done = fresh.filter((x) => x.version >= propagationTarget && x.state === 'in-sync').length
  box.hidden = false
  propagationDone = fresh.length > 0 && done === fresh.length
  box.textContent = fresh.length === 0
    ? `Policy v${propagationTarget}: no reporting host yet.`
    : `Policy v${propagationTarget}: ${done} of ${fresh.length} reporting host${fresh.length === 1 ? '' : 's'} in sync${done === fresh.length ? ' — propagation complete.' : ' — waiting for the rest (see Fleet).'}`
}

async function refreshPropagation() {
  renderPropagation(await api('GET', '/v1/hosts'))
}

function renderPolicy(d, filtered) {
  const admin = session.role === 'admin'
  const tbody = $('policy-table').tBodies[0]
  tbody.replaceChildren(
    ...d.entries.map((e) => {
      const api = e.source.startsWith('api:')
      const actions = h('td', { 'data-label': api ? 'Remove' : undefined })
      if (api) actions.append(h('button', { type: 'button', class: 'danger remove', 'data-id': e.id, 'aria-label': `Remove ${written(e)}` }, 'Remove'))
      return h(
        'tr',
        { 'data-id': e.id, 'data-value': e.value },
        h('td', { 'data-label': 'Value', class: 'mono value' }, written(e), h('span', { class: 'sub' }, e.id ?? '')),
        h('td', { 'data-label': 'Kind' }, e.kind === 'net' ? 'address' : 'name'),
        h('td', { 'data-label': 'Mode' }, e.allow ? badge('allow') : badge(e.mode)),
        h('td', { 'data-label': 'Reason' }, e.reason ?? ''),
        h('td', { 'data-label': 'Source', class: 'mono' }, api ? `API, pushed by ${e.actor ?? e.source.slice(4)}` : e.source),
        e.added ? timeCell(e.added, 'Added') : h('td', { 'data-label': 'Added' }, api ? '' : 'file'),
        h('td', { 'data-label': 'Expires' }, e.expires ? h('time', { datetime: e.expires, title: e.expires }, when(e.expires)) : 'never'),
        actions,
      )
    }),
  )
  $('policy-summary').textContent = `Policy v${d.version}: ${d.entries.length} ${filtered ? 'matching ' : ''}entr${d.entries.length === 1 ? 'y' : 'ies'}${admin ? '' : ' (read role: viewing only)'}`
}

/** The policy's profiles (default-deny sets for labelled containers): name, mode, lines, file. */
function renderProfiles(d) {
  const list = d?.profiles ?? []
  $('profiles-table').tBodies[0].replaceChildren(
    ...list.map((p) =>
      h(
        'tr',
        { 'data-profile': p.name },
        h('td', { 'data-label': 'Profile', class: 'mono' }, p.name),
        h('td', { 'data-label': 'Mode' }, badge(p.mode)),
        h('td', { 'data-label': 'Lines' }, String(p.lines)),
        h('td', { 'data-label': 'Source', class: 'mono' }, p.source),
      ),
    ),
  )
  $('profiles-table').hidden = list.length === 0
  $('profiles-summary').textContent = list.length === 0
    ? 'No profiles (blocklists/profiles/NAME.txt): containers are held to none.'
    : `${list.length} profile${list.length === 1 ? '' : 's'}; a container labelled egress-guard.profile=NAME is held to its profile.`
}

// ---- policy changes --------------------------------------------------------------------------------

const FIELDS = ['value', 'reason', 'expires']

function clearAddErrors() {
  for (const f of FIELDS) {
    $(`add-${f}-error`).textContent = ''
    $(`add-${f}`).removeAttribute('aria-invalid')
  }
  $('add-error').textContent = ''
  $('add-result').textContent = ''
}

function fieldError(field, message) {
  const el = $(`add-${field}-error`)
  setText(el, el.textContent ? `${el.textContent}; ${message}` : message)
  $(`add-${field}`).setAttribute('aria-invalid', 'true')
}

/** Which form field a server problem is about: schema paths name it; entry problems are the value's. */
function problemField(p) {
  const m = /entries\/\d+\/(\w+)/.exec(p.path ?? '') ?? /\/(value|reason|expires)\b/.exec(p.message ?? '')
  if (m && FIELDS.includes(m[1])) return m[1]
  if (/expir/i.test(p.message ?? '')) return 'expires'
  if (/reason/i.test(p.message ?? '')) return 'reason'
  return 'value'
}

async function addEntry(ev) {
  ev.preventDefault()
  clearAddErrors()
  const item = { value: $('add-value').value.trim(), reason: $('add-reason').value.trim() }
  const expires = $('add-expires').value.trim()
  if (expires) item.expires = expires
  item.mode = $('add-mode').value
  if ($('add-allow').checked) item.allow = true
  // The server is the judge of what is valid; these two only save a round trip for empty fields.
  if (!item.value) return fieldError('value', 'give a name or an address')
  if (!item.reason) return fieldError('reason', 'a reason is required (it goes to the audit log)')
  try {
    const r = await api('POST', '/v1/entries', { body: { entries: [item] } })
    setText($('add-result'), `Added ${r.entries.map(written).join(', ')}: policy version ${r.version}. Hosts catch up in the Fleet view.${r.warnings?.length ? ` Warning: ${r.warnings.map((w) => w.message).join('; ')}` : ''}`)
    for (const f of FIELDS) $(`add-${f}`).value = ''
    propagationTarget = r.version
    propagationDone = false
    await tick()
  } catch (e) {
    if (e.status === 400 && e.body?.details?.problems?.length) {
      for (const p of e.body.details.problems) fieldError(problemField(p), p.message)
    } else if (e.status === 400) {
      fieldError('value', e.message)
    } else {
      setText($('add-error'), refusal(e, 'adding entries'))
    }
  }
}

/** Remove asks for a reason in the row itself (the audit log keeps it), then DELETE by id. */
function askRemove(button) {
  const row = button.closest('tr')
  if (row.querySelector('.row-form')) return
  const id = button.dataset.id
  const input = h('input', { type: 'text', placeholder: 'reason for removing', 'aria-label': 'reason for removing' })
  const err = h('p', { class: 'field-error', role: 'alert' })
  const form = h('form', { class: 'row-form' }, input, h('button', { type: 'submit', class: 'danger' }, 'Confirm remove'), h('button', { type: 'button', class: 'cancel' }, 'Cancel'), err)
  form.querySelector('.cancel').addEventListener('click', () => form.remove())
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault()
    err.textContent = ''
    const reason = input.value.trim()
    try {
      const r = await api('DELETE', `/v1/entries/${encodeURIComponent(id)}${reason ? `?reason=${encodeURIComponent(reason)}` : ''}`)
      setText($('add-result'), `Removed ${r.removed.map(written).join(', ')}: policy version ${r.version}. Hosts catch up in the Fleet view.`)
      propagationTarget = r.version
      propagationDone = false
      await tick()
    } catch (e) {
      setText(err, refusal(e, 'removing entries'))
    }
  })
  button.closest('td').append(form)
  input.focus()
}

// ---- hits ------------------------------------------------------------------------------------------

/** Hits seen so far under the current filters, keyed so a re-sent record is counted once. */
let hits = new Map()
let hitsFilter = ''
let newest

const hitKey = (x) => [x.host, x.time, x.lastTime, x.client, x.name, x.qtype, x.action, x.count].join('|')

function filterParams() {
  const p = new URLSearchParams()
  const host = $('hits-host').value.trim()
  const container = $('hits-container').value.trim()
  const name = $('hits-name').value.trim()
  if (host) p.set('host', host)
  if (container) p.set('container', container)
  if (name) p.set('domain', name)
  return p
}

/** First call: the last hour; then only what changed since the newest hit seen (`since` is lastTime >=). */
async function refreshHits() {
  const p = filterParams()
  const key = p.toString()
  if (key !== hitsFilter) {
    hits = new Map()
    newest = undefined
    hitsFilter = key
  }
  p.set('since', newest ?? '1h')
  p.set('limit', '1000')
  const d = await api('GET', `/v1/hits?${p}`)
  if (hitsFilter !== key) return
  const fresh = new Set()
  for (const x of d.hits) {
    const k = hitKey(x)
    if (!hits.has(k)) {
      fresh.add(k)
      hits.set(k, x)
    }
    if (!newest || Date.parse(x.lastTime) > Date.parse(newest)) newest = x.lastTime
  }
  const cutoff = Date.now() - HIT_WINDOW_MS
  for (const [k, x] of hits) if (Date.parse(x.lastTime) < cutoff) hits.delete(k)
  renderHits(newest && hits.size > fresh.size ? fresh : new Set())
}

function renderHits(fresh) {
  const list = [...hits.entries()].sort((a, b) => Date.parse(b[1].lastTime) - Date.parse(a[1].lastTime)).slice(0, 500)
  const tbody = $('hits-table').tBodies[0]
  tbody.replaceChildren(
    ...list.map(([k, x]) =>
      h(
        'tr',
        { class: fresh.has(k) ? 'fresh' : undefined, 'data-name': x.name },
        timeCell(x.lastTime, 'Time'),
        h('td', { 'data-label': 'Host', class: 'mono' }, x.host ?? ''),
        h(
          'td',
          { 'data-label': 'Container / client', class: 'who-cell' },
          x.container ? [h('span', { class: 'mono' }, x.container.name), h('span', { class: 'sub' }, x.container.image), h('span', { class: 'sub' }, `client ${x.client}`)] : h('span', { class: 'mono' }, `client ${x.client}`),
        ),
        h('td', { 'data-label': 'Name', class: 'mono' }, x.name, h('span', { class: 'sub' }, `${x.qtype}${x.count > 1 ? ` × ${x.count}` : ''}`)),
        h('td', { 'data-label': 'Action' }, badge(x.action)),
        h('td', { 'data-label': 'Reason' }, x.entry.reason ?? ''),
        h('td', { 'data-label': 'Entry', class: 'mono' }, x.entry.value, h('span', { class: 'sub' }, x.entry.source)),
        quarantineCell(x),
      ),
    ),
  )
  $('hits-empty').hidden = list.length > 0
  drawChart(list.map(([, x]) => x))
}

/** Hits per 2-minute bucket over the last hour, as an inline SVG bar chart with a text caption. */
function drawChart(list) {
  const now = Date.now()
  // Drawn at the box's own pixel width (not a stretched viewBox), so labels keep their size at
  // phone width; redrawn on every poll, so a resize is picked up within one period.
  const width = Math.max(240, Math.round($('hits-chart').clientWidth || 600))
  const height = 130
  const pad = { l: 28, r: 6, t: 8, b: 18 }
  const bucketMs = HIT_WINDOW_MS / HIT_BUCKETS
  const counts = new Array(HIT_BUCKETS).fill(0)
  for (const x of list) {
    const i = Math.floor((Date.parse(x.lastTime) - (now - HIT_WINDOW_MS)) / bucketMs)
    if (i >= 0 && i < HIT_BUCKETS) counts[i] += x.count
    else if (i === HIT_BUCKETS) counts[HIT_BUCKETS - 1] += x.count
  }
  const max = Math.max(1, ...counts)
  const total = counts.reduce((a, b) => a + b, 0)
  const plotW = width - pad.l - pad.r
  const plotH = height - pad.t - pad.b
  const bw = plotW / HIT_BUCKETS
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `hits over the last hour: ${total} in total, at most ${max} per 2 minutes`, id: 'hits-svg' })
  root.append(svg('line', { class: 'axis', x1: pad.l, y1: pad.t + plotH, x2: width - pad.r, y2: pad.t + plotH }))
  root.append(svg('line', { class: 'axis', x1: pad.l, y1: pad.t, x2: pad.l, y2: pad.t + plotH }))
  root.append(svg('text', { x: 2, y: pad.t + 9 }, String(max)))
  root.append(svg('text', { x: 2, y: pad.t + plotH }, '0'))
  root.append(svg('text', { x: pad.l, y: height - 4 }, '60 min ago'))
  root.append(svg('text', { x: width - pad.r - 24, y: height - 4 }, 'now'))
  counts.forEach((n, i) => {
    if (n === 0) return
    const bh = Math.max(2, (n / max) * plotH)
    const bar = svg('rect', { class: 'bar', x: pad.l + i * bw + 1, y: pad.t + plotH - bh, width: Math.max(1, bw - 2), height: bh })
    bar.append(svg('title', {}, `${n} hit${n === 1 ? '' : 's'}, ${Math.round((HIT_BUCKETS - i) * 2)}–${Math.round((HIT_BUCKETS - i - 1) * 2)} min ago`))
    root.append(bar)
  })
  $('hits-chart').replaceChildren(root)
  $('hits-chart-caption').textContent = `${total} hit${total === 1 ? '' : 's'} in the last hour (bars: 2 minutes each)`
}

// ---- quarantines -----------------------------------------------------------------------------------

/**
 * A hit row's Quarantine button: admin role only (a read token would be refused with 403 anyway). It
 * fills the quarantine form above the table with the hit's container name and host; the form, not the
 * row, holds what is typed, because the rows are rebuilt every 2 seconds.
 */
function quarantineCell(x) {
  const td = h('td', { 'data-label': x.container && session.role === 'admin' ? 'Quarantine' : undefined })
  if (x.container && session.role === 'admin') {
    td.append(h('button', { type: 'button', class: 'danger quarantine', 'data-container': x.container.name, 'data-host': x.host ?? '', 'aria-label': `Quarantine ${x.container.name}${x.host ? ` on ${x.host}` : ''}` }, 'Quarantine'))
  }
  return td
}

function closeQuarantineForms() {
  $('quarantine-form').hidden = true
  $('lift-form').hidden = true
  $('quarantine-error').textContent = ''
  $('lift-error').textContent = ''
}

function askQuarantine(button) {
  $('quarantine-container').value = button.dataset.container ?? ''
  $('quarantine-host').value = button.dataset.host ?? ''
  $('quarantine-reason').value = ''
  $('quarantine-expires').value = ''
  $('quarantine-error').textContent = ''
  $('quarantine-result').textContent = ''
  $('quarantine-form').hidden = false
  $('quarantine-reason').focus()
}

async function submitQuarantine(ev) {
  ev.preventDefault()
  const err = $('quarantine-error')
  err.textContent = ''
  const body = { container: $('quarantine-container').value.trim(), reason: $('quarantine-reason').value.trim() }
  const host = $('quarantine-host').value.trim()
  const expires = $('quarantine-expires').value.trim()
  if (host) body.host = host
  if (expires) body.expires = expires
  if (!body.container) return (err.textContent = 'give a container name')
  if (!body.reason) return (err.textContent = 'a reason is required (it goes to the audit log)')
  try {
    const r = await api('POST', '/v1/quarantines', { body })
    $('quarantine-form').hidden = true
    $('quarantine-result').textContent = `Quarantined ${r.quarantine.container} ${r.quarantine.host ? `on ${r.quarantine.host}` : 'on every host'} (${r.quarantine.id}): policy version ${r.version}. The Fleet view shows the containers it holds.`
  } catch (e) {
    err.textContent = refusal(e, 'quarantining containers')
  }
}

/** Quarantines in force, with the containers the agents report holding in each (host/name). */
function renderQuarantines(d) {
  const list = d?.quarantines ?? []
  const admin = session.role === 'admin'
  $('quarantines-table').tBodies[0].replaceChildren(
    ...list.map((q) =>
      h(
        'tr',
        { 'data-quarantine': q.id, 'data-container': q.container },
        h('td', { 'data-label': 'Container', class: 'mono' }, q.container, h('span', { class: 'sub' }, q.id)),
        h('td', { 'data-label': 'Host', class: 'mono' }, q.host ?? 'every host'),
        h('td', { 'data-label': 'Holds', class: 'mono' }, q.matched.length ? q.matched.map((m) => h('span', { class: 'held' }, `${m.host}/${m.container.name}`, h('span', { class: 'sub' }, m.container.id.slice(0, 12)))) : h('span', { class: 'sub' }, 'no match yet')),
        h('td', { 'data-label': 'Reason' }, q.reason),
        h('td', { 'data-label': 'Added' }, h('time', { datetime: q.added, title: q.added }, when(q.added)), h('span', { class: 'sub' }, `by ${q.actor}`)),
        h('td', { 'data-label': 'Expires' }, q.expires ? h('time', { datetime: q.expires, title: q.expires }, when(q.expires)) : 'never'),
        h('td', { 'data-label': admin ? 'Lift' : undefined }, admin ? h('button', { type: 'button', class: 'lift', 'data-id': q.id, 'aria-label': `Lift the quarantine of ${q.container}` }, 'Lift') : ''),
      ),
    ),
  )
  $('quarantines-table').hidden = list.length === 0
  $('quarantines-summary').textContent = list.length === 0
    ? `No container is quarantined.${admin ? ' Quarantine one from a hit in the Hits view.' : ''}`
    : `${list.length} quarantine${list.length === 1 ? '' : 's'} in force; ${list.filter((q) => q.matched.length === 0).length} with no match yet.`
}

function askLift(button) {
  $('lift-form').dataset.id = button.dataset.id
  $('lift-legend').textContent = `Lift the quarantine ${button.dataset.id}`
  $('lift-reason').value = ''
  $('lift-error').textContent = ''
  $('lift-result').textContent = ''
  $('lift-form').hidden = false
  $('lift-reason').focus()
}

async function submitLift(ev) {
  ev.preventDefault()
  const err = $('lift-error')
  err.textContent = ''
  const id = $('lift-form').dataset.id
  const reason = $('lift-reason').value.trim()
  if (!reason) return (err.textContent = 'a reason is required (it goes to the audit log)')
  try {
    const r = await api('DELETE', `/v1/quarantines/${encodeURIComponent(id)}?reason=${encodeURIComponent(reason)}`)
    $('lift-form').hidden = true
    $('lift-result').textContent = `Lifted ${r.removed.map((q) => q.container).join(', ')}: policy version ${r.version}.`
    await tick()
  } catch (e) {
    err.textContent = refusal(e, 'lifting quarantines')
  }
}

function initQuarantines() {
  $('hits-table').addEventListener('click', (ev) => {
    const b = ev.target.closest('button.quarantine')
    if (b) askQuarantine(b)
  })
  $('quarantines-table').addEventListener('click', (ev) => {
    const b = ev.target.closest('button.lift')
    if (b) askLift(b)
  })
  $('quarantine-form').addEventListener('submit', (ev) => void submitQuarantine(ev))
  $('lift-form').addEventListener('submit', (ev) => void submitLift(ev))
  $('quarantine-cancel').addEventListener('click', () => ($('quarantine-form').hidden = true))
  $('lift-cancel').addEventListener('click', () => ($('lift-form').hidden = true))
}

// ---- audit -----------------------------------------------------------------------------------------

function auditWhat(ev) {
  return ev.action === 'policy.version' ? `policy v${ev.target}` : ev.target
}

/** `id api-1, mode block, expires ...`: the details object as one readable line (at most 300 chars). */
function detailText(d) {
  const text = d && typeof d === 'object' && !Array.isArray(d)
    ? Object.entries(d).map(([k, v]) => `${k} ${v !== null && typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join(', ')
    : JSON.stringify(d)
  return text.length > 300 ? `${text.slice(0, 299)}…` : text
}

function renderAudit(d) {
  const tbody = $('audit-table').tBodies[0]
  tbody.replaceChildren(
    ...d.events.map((ev) =>
      h(
        'tr',
        { 'data-action': ev.action },
        timeCell(ev.time, 'Time'),
        h('td', { 'data-label': 'Who', class: 'mono' }, ev.actor),
        h('td', { 'data-label': 'Action', class: 'mono' }, ev.action),
        h('td', { 'data-label': 'What', class: 'mono' }, auditWhat(ev), ev.details !== undefined ? h('span', { class: 'sub' }, detailText(ev.details)) : ''),
        h('td', { 'data-label': 'Why' }, ev.reason ?? ''),
      ),
    ),
  )
  $('audit-empty').hidden = d.events.length > 0
}

// ---- sign in / out ---------------------------------------------------------------------------------

/**
 * Check a token and learn its role: GET /v1/hosts answers any read or admin token (401: unknown;
 * 403: an agent token), GET /v1/tokens only an admin one. The role only shapes messages and buttons;
 * the server decides every request on its own.
 */
async function signIn(ev) {
  ev.preventDefault()
  const input = $('signin-token')
  const token = input.value.trim()
  const err = $('signin-error')
  err.textContent = ''
  if (!token) return (err.textContent = 'paste a token')
  try {
    await api('GET', '/v1/hosts', { token })
  } catch (e) {
    if (e.status === 401) err.textContent = 'That token was refused (401): it is unknown or revoked. Check that you copied all of it.'
    else if (e.status === 403) err.textContent = 'That is an agent token (403): agents cannot use the dashboard. Use a read or admin token.'
    else setText(err, `Cannot sign in: ${e.message}`)
    return
  }
  let role = 'read'
  try {
    await api('GET', '/v1/tokens', { token })
    role = 'admin'
  } catch (e) {
    if (e.status !== 403) throw e
  }
  input.value = ''
  session.set(token, role)
  enter()
}

function signOut(message) {
  session.clear()
  clearTimeout(timer)
  propagationTarget = undefined
  hits = new Map()
  hitsFilter = ''
  newest = undefined
  for (const id of ['fleet-table', 'policy-table', 'hits-table', 'audit-table', 'quarantines-table']) $(id).tBodies[0].replaceChildren()
  closeQuarantineForms()
  $('nav').hidden = true
  $('who').hidden = true
  banner('')
  setText($('signin-error'), message)
  if (location.hash) history.replaceState(null, '', location.pathname)
  show('signin')
}

function enter() {
  $('nav').hidden = false
  $('who').hidden = false
  $('who-role').textContent = `signed in: ${session.role} role`
  banner('')
  const v = location.hash.slice(1)
  show(VIEWS.includes(v) ? v : 'fleet')
}

function debounce(fn, ms) {
  let t
  return () => {
    clearTimeout(t)
    t = setTimeout(fn, ms)
  }
}

function init() {
  $('signin-form').addEventListener('submit', (ev) => void signIn(ev).catch((e) => setText($('signin-error'), `Cannot sign in: ${e.message}`)))
  $('sign-out').addEventListener('click', () => signOut())
  $('add-form').addEventListener('submit', (ev) => void addEntry(ev))
  $('policy-table').addEventListener('click', (ev) => {
    const b = ev.target.closest('button.remove')
    if (b) askRemove(b)
  })
  initQuarantines()
  const again = debounce(() => void tick(), 250)
  for (const id of ['policy-search', 'policy-source', 'hits-host', 'hits-container', 'hits-name']) $(id).addEventListener('input', again)
  window.addEventListener('hashchange', () => {
    const v = location.hash.slice(1)
    if (session.token && VIEWS.includes(v)) show(v)
  })
  if (session.token) enter()
  else show('signin')
}

init()
