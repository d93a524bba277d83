// `egress-guard profile ls`: the profiles the server distributes, their modes and sizes, and the
// containers held to each per host. `profile suggest NAME`: a proposed profile file from what learn
// mode recorded, printed, or written to `<blocklists>/profiles/NAME.txt` for review and commit.
import { mkdir, open, rename, rm } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { dirname, join } from 'node:path'
import type { Command } from './types.js'
import { helpText, loadOptions, type Spec } from '../config.js'
import { errors, isEgError } from '../errors.js'
import type { ApiClient } from '../client/api-client.js'
import type { ProfileListItem, ProfilesBody } from '../client/api-types.js'
import { adminClient, adminSpec, formatTable } from '../client/admin-options.js'
import { PROFILE_MODES, type ProfileMode } from '../profiles/types.js'
import { isProfileName, parseProfile } from '../profiles/parse.js'
import { PROFILES_DIR } from '../profiles/load.js'
import { suggestProfile } from '../profiles/suggest.js'
import { formatProblem } from '../policy/problems.js'

const spec = {
  ...adminSpec,
  since: { type: 'string', noEnv: true, default: '7d', help: 'suggest: learned in this window (7d, 24h or an RFC 3339 time)' },
  write: { type: 'boolean', noEnv: true, help: 'suggest: write <blocklists>/profiles/NAME.txt (for review and commit)' },
  force: { type: 'boolean', noEnv: true, help: 'suggest --write: replace an existing file' },
  // multiple, as for match and the agent: a config file's `blocklists` list must not break this command.
  blocklists: { type: 'string', multiple: true, help: 'suggest --write: the local blocklists directory, a git checkout (default ./blocklists)' },
  mode: { type: 'string', noEnv: true, help: 'suggest: the mode= line to write (learn, alert, enforce; default: the profile\'s current mode)' },
} as const satisfies Spec

const USAGE = `usage: egress-guard profile ls [--json]
       egress-guard profile suggest NAME [--since 7d] [--mode learn|alert|enforce] [--write [--force]] [--blocklists DIR] [--json]

ls: the profiles (<blocklists dir>/profiles/NAME.txt) the server distributes: name, mode (learn,
alert or enforce), destination lines, source file and, once agents report them, the containers held
to each per host.
suggest: a proposed profile file from the names the profile's containers looked up in learn mode:
the current profile's lines first, then one learned name a line (5 or more names directly under one
parent become one *.parent line), each with a comment: first seen, lookups, containers. The mode=
line keeps the profile's current mode unless --mode says otherwise. --write writes it to
<blocklists>/profiles/NAME.txt and never replaces an existing file without --force.`

/**
 * The profiles table (also under `block ls`). The CONTAINERS column appears once the server reports
 * containers held to profiles (host/name per container).
 */
export function profileTable(profiles: ProfileListItem[]): string {
  const withContainers = profiles.some((p) => p.containers !== undefined)
  const header = ['PROFILE', 'MODE', 'LINES', 'SOURCE', ...(withContainers ? ['CONTAINERS'] : [])]
  return formatTable(
    header,
    profiles.map((p) => [
      p.name,
      p.mode,
      String(p.lines),
      p.source,
      ...(withContainers ? [(p.containers ?? []).map((c) => `${c.host}/${c.container.name}`).join(', ') || '-'] : []),
    ]),
  )
}

/** Containers whose label names no profile of the policy (they reach only the DNS sinkhole). */
export function missingLines(missing: ProfilesBody['missing']): string {
  if (!missing || missing.length === 0) return ''
  return `\nlabelled with a profile the policy does not have (held to DNS only):\n${missing.map((m) => `  ${m.host}/${m.container.name}: egress-guard.profile=${JSON.stringify(m.profile)}`).join('\n')}\n`
}

/** The profiles, or none from a server that predates them (404 on /v1/profiles). */
export async function listProfilesOrNone(api: ApiClient): Promise<ProfilesBody | undefined> {
  try {
    return await api.listProfiles()
  } catch (e) {
    if (isEgError(e) && e.code === 'EG_NOT_FOUND') return undefined
    throw e
  }
}

/**
 * Write `text` to `file`: without `force` only when no file is there (O_EXCL, so a file made meanwhile
 * is not replaced either); with it through a temporary file renamed over the old one.
 */
async function writeProfile(file: string, text: string, force: boolean): Promise<void> {
  await mkdir(dirname(file), { recursive: true })
  const target = force ? `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}` : file
  let fh
  try {
    fh = await open(target, 'wx', 0o644)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw errors.conflict(`${file} exists: review and edit it, or give --force to replace it`)
    throw errors.fileUnreadable(`${file}: cannot write it: ${(e as Error).message}`)
  }
  try {
    await fh.writeFile(text)
    await fh.close()
    if (force) await rename(target, file)
  } catch (e) {
    await fh.close().catch(() => {})
    if (force) await rm(target, { force: true })
    throw errors.fileUnreadable(`${file}: cannot write it: ${(e as Error).message}`)
  }
}

const command: Command = {
  summary: 'list profiles, their modes and containers (profile ls); propose one from learn mode (profile suggest)',
  async run(argv, io) {
    const { options: o, positionals } = loadOptions(argv, spec, { env: io.env, section: 'profile' })
    if (o.help) {
      io.stdout(helpText(USAGE, spec))
      return 0
    }
    const [sub, ...rest] = positionals
    if (sub === 'ls' && rest.length === 0) {
      const r = await (await adminClient(o)).listProfiles()
      if (o.json) io.stdout(JSON.stringify(r) + '\n')
      else {
        if (r.profiles.length > 0) io.stdout(profileTable(r.profiles))
        io.stdout(missingLines(r.missing))
        io.stderr(`${r.profiles.length} ${r.profiles.length === 1 ? 'profile' : 'profiles'}; policy version ${r.version}\n`)
      }
      return 0
    }
    if (sub === 'suggest' && rest.length === 1) {
      const name = rest[0]!
      if (!isProfileName(name)) throw errors.usage(`profile suggest: ${JSON.stringify(name)} is not a profile name (a-z 0-9 _ -, starting with a letter or digit, at most 63 characters)`)
      if (o.mode !== undefined && !(PROFILE_MODES as readonly string[]).includes(o.mode)) throw errors.usage('--mode must be learn, alert or enforce')
      if (o.force && !o.write) throw errors.usage('--force only goes with --write')
      const api = await adminClient(o)
      const learned = await api.learned(name, o.since)
      const current = (await listProfilesOrNone(api))?.profiles.find((p) => p.name === name)
      const mode = (o.mode as ProfileMode | undefined) ?? current?.mode ?? learned.mode ?? 'learn'
      const s = suggestProfile(learned.records, {
        name,
        mode,
        ...(current ? { currentMode: current.mode, existing: current.rules, existingSource: current.source } : {}),
        ...(o.since ? { since: o.since } : {}),
        now: new Date(),
      })
      if (o.write && o.blocklists.length > 1) throw errors.usage('profile suggest --write takes one --blocklists DIR')
      const file = join(o.blocklists[0] ?? 'blocklists', PROFILES_DIR, `${name}.txt`)
      let wrote = false
      if (o.write) {
        if (s.lines.length === 0 && (current?.rules.length ?? 0) === 0) {
          io.stderr(`nothing learned for ${name} in the last ${o.since}; not writing ${file}\n`)
          return 1
        }
        // What is written must read back as a profile without an error (lint's own parser).
        const errs = parseProfile(s.text, file, name).problems.filter((p) => p.severity === 'error')
        if (errs.length > 0) throw errors.internal(`the proposed profile does not parse; not writing it:\n${errs.map(formatProblem).join('\n')}`)
        await writeProfile(file, s.text, o.force)
        wrote = true
      }
      if (o.json) io.stdout(JSON.stringify({ profile: name, mode, text: s.text, lines: s.lines, covered: s.covered, skipped: s.skipped, names: s.names, ...(wrote ? { written: file } : {}) }) + '\n')
      else if (!wrote) io.stdout(s.text)
      io.stderr(
        `${s.lines.length} proposed line${s.lines.length === 1 ? '' : 's'} from ${s.names} learned name${s.names === 1 ? '' : 's'}` +
          (wrote ? `; wrote ${file}: review it, \`egress-guard lint ${file}\`, then commit it\n` : '\n'),
      )
      return 0
    }
    throw errors.usage(USAGE)
  },
}
export default command
