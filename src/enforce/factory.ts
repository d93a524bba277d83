// The one place that picks an Enforcer backend: commands and the controller call createEnforcer and
// never name a backend module themselves.
import { errors } from '../errors.js'
import type { Logger } from '../log.js'
import type { Enforcer, EnforcerOptions } from './types.js'
import { createIptablesEnforcer } from './iptables.js'
import { createNftablesEnforcer } from './nftables.js'
import type { IptablesFlavour } from './tools.js'

export type BackendKind = 'iptables' | 'nftables' | 'dry-run'
export const BACKENDS: readonly BackendKind[] = ['iptables', 'nftables', 'dry-run']

export type FactoryOptions = EnforcerOptions & {
  /** dry-run: where to print what would be done. */
  print?: (line: string) => void
  logger?: Logger
  /** iptables: which binaries (default: the system's `iptables`). */
  flavour?: IptablesFlavour | 'default'
}

export function createEnforcer(kind: BackendKind, opts: FactoryOptions): Enforcer {
  switch (kind) {
    case 'iptables':
      return createIptablesEnforcer(opts)
    case 'nftables':
      return createNftablesEnforcer(opts)
    case 'dry-run':
      throw errors.config('backend dry-run: not built yet (src/enforce/dry-run.ts)')
    default:
      throw errors.config(`unknown backend ${JSON.stringify(kind)} (iptables, nftables, dry-run)`)
  }
}
