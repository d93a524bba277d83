// `egress-guard plan`: not built yet (see the open issues). Replace this stub.
import type { Command } from './types.js'
import { errors } from '../errors.js'

const command: Command = {
  summary: '(not built yet)',
  async run() {
    throw errors.usage('plan: not built yet')
  },
}
export default command
