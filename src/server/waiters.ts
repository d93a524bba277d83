// Long-poll bookkeeping: the requests waiting for the policy to change. Every waiter waits on the
// current etag (a request whose etag is already stale is answered at once), so one Set is enough.
// A waiter is a resolver plus one setTimeout: thousands cost a few hundred bytes each, and one
// notify() wakes them all in a single pass.
export type WakeReason = 'changed' | 'timeout' | 'closed'

interface Waiter {
  resolve: (r: WakeReason) => void
  timer: NodeJS.Timeout
}

export class ChangeWaiters {
  #set = new Set<Waiter>()
  #closed = false

  get size(): number {
    return this.#set.size
  }

  /**
   * Resolves 'changed' on notify(), 'timeout' after `ms`, 'closed' on close() or when `cancel`
   * is called (the client went away). Never rejects.
   */
  wait(ms: number): { promise: Promise<WakeReason>; cancel: () => void } {
    if (this.#closed) return { promise: Promise.resolve('closed'), cancel: () => {} }
    let w!: Waiter
    const promise = new Promise<WakeReason>((resolve) => {
      w = {
        resolve: (r) => {
          clearTimeout(w.timer)
          this.#set.delete(w)
          resolve(r)
        },
        timer: setTimeout(() => w.resolve('timeout'), ms),
      }
    })
    this.#set.add(w)
    return { promise, cancel: () => w.resolve('closed') }
  }

  notify(): number {
    const all = [...this.#set]
    this.#set.clear()
    for (const w of all) w.resolve('changed')
    return all.length
  }

  close(): void {
    this.#closed = true
    const all = [...this.#set]
    this.#set.clear()
    for (const w of all) w.resolve('closed')
  }
}
