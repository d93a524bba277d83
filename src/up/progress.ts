// Start-up progress for `up`: waits, through the server's own fleet view, until this host's agent has
// applied a policy version (its report after the kernel sets are loaded), so the line saying
// "enforcing" is printed only when the kernel really holds the policy.
import type { ApiClient } from '../client/api-client.js'
import type { HostStatus } from '../client/api-types.js'

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const onAbort = (): void => {
      clearTimeout(t)
      resolve()
    }
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal.addEventListener('abort', onAbort, { once: true })
  })

/**
 * Poll GET /v1/hosts until `host` reports `version` or later. Resolves undefined when `signal` aborts
 * first (a stop while starting is not an error). `onWait` is called every `noticeMs` while waiting.
 */
export async function waitForReport(
  client: Pick<ApiClient, 'hosts'>,
  host: string,
  version: number,
  signal: AbortSignal,
  onWait: (elapsedMs: number) => void = () => undefined,
  noticeMs = 10_000,
): Promise<HostStatus | undefined> {
  const t0 = Date.now()
  let nextNotice = noticeMs
  while (!signal.aborted) {
    const h = await client.hosts().then(
      (b) => b.hosts.find((x) => x.host === host),
      () => undefined,
    )
    if (h && h.version >= version) return h
    const elapsed = Date.now() - t0
    if (elapsed >= nextNotice) {
      onWait(elapsed)
      nextNotice += noticeMs
    }
    await sleep(200, signal)
  }
  return undefined
}
