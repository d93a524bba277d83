// Poll a condition instead of sleeping a guessed time; returns how long it took (some tests print it).
export async function until(what: string, cond: () => Promise<boolean> | boolean, ms: number, stepMs = 100): Promise<number> {
  const t0 = Date.now()
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, stepMs))
  }
  return Date.now() - t0
}
