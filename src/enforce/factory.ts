// The one place that picks an Enforcer backend: commands and the controller call createEnforcer and
// never name a backend module themselves.
import { errors } from '../errors.js'
import type { Logger } from '../log.js'
import type { DesiredState, Enforcer, EnforcerOptions } from './types.js'
import { createIptablesEnforcer } from './iptables.js'
import { createNftablesEnforcer } from './nftables.js'
import { createDryRunEnforcer } from './dry-run.js'
import type { IptablesFlavour } from './tools.js'

export type BackendKind = 'iptables' | 'nftables' | 'dry-run'
export const BACKENDS: readonly BackendKind[] = ['iptables', 'nftables', 'dry-run']

export type FactoryOptions = EnforcerOptions & {
  /** dry-run: where to print what would be done. */
  print?: (line: string) => void
  logger?: Logger
  /** iptables: which binaries (default: the system's `iptables`). */
  flavour?: IptablesFlavour | 'default'
  /** dry-run: what the pretend kernel holds before the first apply (e.g. for `plan`). */
  current?: DesiredState
}

export function createEnforcer(kind: BackendKind, opts: FactoryOptions): Enforcer {
  switch (kind) {
    case 'iptables':
      return createIptablesEnforcer(opts)
    case 'nftables':
      return createNftablesEnforcer(opts)
    case 'dry-run':
      return createDryRunEnforcer(opts.print ?? ((line) => void process.stdout.write(line + '\n')), {
        ...(opts.namePrefix !== undefined ? { namePrefix: opts.namePrefix } : {}),
        ...(opts.current !== undefined ? { current: opts.current } : {}),
      })
    default:
      throw errors.config(`unknown backend ${JSON.stringify(kind)} (iptables, nftables, dry-run)`)
  }
}
