// Text the agent sends to the API: the server refuses control and other hidden characters in free
// text (400 EG_CONTROL_CHAR), so the agent escapes its own first (an iptables message, a container's
// compose label, a blocklist reason) and cuts it to the field's limit. A refused report would leave the
// host looking silent, and a refused hit batch would block the spool behind it.
import { printable } from '../server/ui/printable.js'
import { hitSchema } from '../server/schemas.js'
import type { Hit } from '../sinkhole/types.js'

/** Escaped (`\x1b`), then at most `max` UTF-16 units without splitting a surrogate pair. */
export function apiText(s: string, max: number): string {
  const t = printable(s)
  if (t.length <= max) return t
  const c = t.charCodeAt(max - 1)
  return t.slice(0, c >= 0xd800 && c <= 0xdbff ? max - 1 : max)
}

const H = hitSchema.properties
const C = H.container.properties
const E = H.entry.properties

/**
 * A hit as the API takes it. The queried name goes as it arrived: it is the evidence, the API stores
 * it unchanged and every output (CLI, JSON, dashboard) escapes it.
 */
export function hitForUpload(h: Hit): Hit {
  const c = h.container
  return {
    ...h,
    client: apiText(h.client, H.client.maxLength),
    ...(c
      ? {
          container: {
            id: apiText(c.id, C.id.maxLength),
            name: apiText(c.name, C.name.maxLength),
            image: apiText(c.image, C.image.maxLength),
            ...(c.service !== undefined ? { service: apiText(c.service, C.service.maxLength) } : {}),
            ...(c.project !== undefined ? { project: apiText(c.project, C.project.maxLength) } : {}),
          },
        }
      : {}),
    qtype: apiText(h.qtype, H.qtype.maxLength),
    entry: {
      ...h.entry,
      value: apiText(h.entry.value, E.value.maxLength),
      source: apiText(h.entry.source, E.source.maxLength),
      ...(h.entry.reason !== undefined ? { reason: apiText(h.entry.reason, E.reason.maxLength) } : {}),
      ...(h.entry.id !== undefined ? { id: apiText(h.entry.id, E.id.maxLength) } : {}),
    },
    answer: apiText(h.answer, H.answer.maxLength),
  }
}
