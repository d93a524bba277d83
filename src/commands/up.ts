// `egress-guard up`: not built yet (see the open issues). Replace this stub.
import type { Command } from './types.js'
import { errors } from '../errors.js'

const command: Command = {
  summary: '(not built yet)',
  async run() {
    throw errors.usage('up: not built yet')
  },
}
export default command
