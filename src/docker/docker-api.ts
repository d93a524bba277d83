// The few Docker Engine API calls container attribution needs, over the engine's unix socket with
// node:http (no client library: two GETs and one streamed GET). Unversioned paths, so any engine answers.
import { request } from 'node:http'

export interface DockerResponse {
  status: number
  body: unknown
}

export interface StreamHandlers {
  /** Called once the engine accepted the request (status 200), before any line. */
  onOpen?: () => void
  /** One parsed JSON object per line of the stream. */
  onLine: (value: unknown) => void
  signal?: AbortSignal
}

/** How containers.ts talks to Docker; tests may pass their own. */
export interface DockerTransport {
  /** GET a JSON document. Rejects on connection errors and timeouts; non-2xx comes back as a status. */
  getJson(path: string): Promise<DockerResponse>
  /** GET a newline-delimited JSON stream; resolves when the engine ends it, rejects on errors. */
  stream(path: string, handlers: StreamHandlers): Promise<void>
}

/** Longest single event line accepted; Docker events are a few hundred bytes. */
const MAX_LINE = 1024 * 1024
/** Largest JSON document accepted (a /containers/json on a host with thousands of containers fits). */
const MAX_BODY = 64 * 1024 * 1024

export function createDockerTransport(opts: { socketPath: string; timeoutMs?: number }): DockerTransport {
  const timeoutMs = opts.timeoutMs ?? 10_000
  return {
    getJson(path) {
      return new Promise((resolve, reject) => {
        const req = request({ socketPath: opts.socketPath, path, method: 'GET', headers: { host: 'docker' }, timeout: timeoutMs }, (res) => {
          const chunks: Buffer[] = []
          let size = 0
          res.on('data', (c: Buffer) => {
            size += c.length
            if (size > MAX_BODY) {
              req.destroy(new Error(`docker ${path}: response larger than ${MAX_BODY} bytes`))
              return
            }
            chunks.push(c)
          })
          res.on('error', reject)
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8')
            let body: unknown = text
            try {
              body = text.length > 0 ? JSON.parse(text) : undefined
            } catch {
              /* engines answer errors as JSON, but keep the text when they do not */
            }
            resolve({ status: res.statusCode ?? 0, body })
          })
        })
        req.on('timeout', () => req.destroy(new Error(`docker ${path}: no answer within ${timeoutMs} ms`)))
        req.on('error', reject)
        req.end()
      })
    },

    stream(path, h) {
      return new Promise((resolve, reject) => {
        if (h.signal?.aborted) return resolve()
        const req = request({ socketPath: opts.socketPath, path, method: 'GET', headers: { host: 'docker' } }, (res) => {
          if (res.statusCode !== 200) {
            res.resume()
            reject(new Error(`docker ${path}: HTTP ${res.statusCode}`))
            return
          }
          h.onOpen?.()
          let buf = ''
          res.setEncoding('utf8')
          res.on('data', (chunk: string) => {
            buf += chunk
            let nl: number
            while ((nl = buf.indexOf('\n')) >= 0) {
              const line = buf.slice(0, nl).trim()
              buf = buf.slice(nl + 1)
              if (line.length === 0) continue
              let value: unknown
              try {
                value = JSON.parse(line)
              } catch {
                continue // a garbled line is skipped; the next refresh repairs anything it described
              }
              h.onLine(value)
            }
            if (buf.length > MAX_LINE) buf = '' // no newline in a megabyte: not an event stream, drop it
          })
          res.on('error', (e) => (h.signal?.aborted ? resolve() : reject(e)))
          res.on('end', () => resolve())
          res.on('close', () => resolve())
        })
        const onAbort = () => req.destroy()
        h.signal?.addEventListener('abort', onAbort, { once: true })
        req.on('error', (e) => (h.signal?.aborted ? resolve() : reject(e)))
        req.on('close', () => h.signal?.removeEventListener('abort', onAbort))
        req.end()
      })
    },
  }
}
