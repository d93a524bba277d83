// `doctor`'s check of the Docker Engine API: an API reachable over TCP without TLS client certificates
// is root on this host for whoever reaches it, so it fails `doctor` (exit 1) with how to fix it.
import type { Check } from './checks.js'
import { dockerApiState, FIXES } from '../docker/api-exposure.js'

export const dockerApiCheck: Check = async (ctx) => {
  const name = 'Docker API'
  const s = await (ctx.dockerApi ?? (() => dockerApiState({ ...(ctx.netns ? { netns: ctx.netns } : {}), ...(ctx.daemonJson ? { daemonJson: ctx.daemonJson } : {}) })))()
  if (!s) return { name, status: 'skip', detail: 'no dockerd runs in this network namespace and daemon.json sets no TCP listener', required: false }
  if (s.verdict === 'ok') return { name, status: 'ok', detail: s.detail, required: false }
  return { name, status: s.verdict, detail: s.detail, fix: FIXES[s.verdict], required: s.verdict === 'fail' }
}
