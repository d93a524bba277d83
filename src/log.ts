// One pino logger for the process; components take a child with fixed field names
// (`component`, `domain`, `ip`, `container`) so logs can be queried the same way everywhere.
import { pino, type Logger } from 'pino'

export type { Logger }

export function createLogger(opts: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  return pino({ level: opts.level ?? 'info', base: { app: 'egress-guard' } }, (opts.destination as pino.DestinationStream | undefined) ?? pino.destination(2))
}

/** A logger that drops everything: for tests and pure code paths. */
export const silentLogger: Logger = pino({ level: 'silent' })
