// The one place that picks a container-egress backend (issue 16), next to factory.ts for the fleet
// Enforcer: callers name a BackendKind and never a backend module.
import { errors } from '../errors.js'
import type { Logger } from '../log.js'
import type { BackendKind } from './factory.js'
import type { IptablesFlavour } from './tools.js'
import type { ContainerEnforcer, ContainerEnforcerOptions } from './container-types.js'
import { createContainerIptables } from './container-iptables.js'
import { createContainerNft } from './container-nft.js'
import { createContainerDryRun, type DryRunKernel } from './container-dry-run.js'

export type ContainerFactoryOptions = ContainerEnforcerOptions & {
  logger?: Logger
  /** iptables: which binaries (default: the system's `iptables`, the flavour Docker uses). */
  flavour?: IptablesFlavour | 'default'
  /** dry-run: where to print what would be done. */
  print?: (line: string) => void
  /** dry-run: the pretend kernel (shared between instances to model an agent restart). */
  kernel?: DryRunKernel
  /** nftables: how a re-learned pair's timeout is refreshed (see ContainerNftOptions). */
  timeoutRefresh?: 'probe' | 'add' | 'readd'
}

export function createContainerEnforcer(kind: BackendKind, opts: ContainerFactoryOptions = {}): ContainerEnforcer {
  const common = {
    ...(opts.netns !== undefined ? { netns: opts.netns } : {}),
    ...(opts.namePrefix !== undefined ? { namePrefix: opts.namePrefix } : {}),
    ...(opts.logger ? { logger: opts.logger } : {}),
  }
  switch (kind) {
    case 'iptables':
      return createContainerIptables({ ...common, ...(opts.flavour ? { flavour: opts.flavour } : {}) })
    case 'nftables':
      return createContainerNft({ ...common, ...(opts.timeoutRefresh ? { timeoutRefresh: opts.timeoutRefresh } : {}) })
    case 'dry-run':
      return createContainerDryRun(opts.print ?? ((line) => void process.stdout.write(line + '\n')), {
        ...(opts.namePrefix !== undefined ? { namePrefix: opts.namePrefix } : {}),
        ...(opts.kernel ? { kernel: opts.kernel } : {}),
      })
    default:
      throw errors.config(`unknown backend ${JSON.stringify(kind)} (iptables, nftables, dry-run)`)
  }
}
