// The only reader of flags, environment and config files. Each command declares the options it
// takes (a spec); this file reads them once, in order defaults < config file < EG_* env < flags,
// validates types, and returns a frozen object that is passed down. Nothing else reads process.env.
import { parseArgs } from 'node:util'
import { readFileSync } from 'node:fs'
import { errors } from './errors.js'

export interface OptionSpec {
  type: 'string' | 'boolean'
  /** Repeatable flag; config-file value may be an array. */
  multiple?: boolean
  short?: string
  default?: string | boolean | string[]
  /** One line for `--help`. */
  help?: string
  /** Skip reading EG_<NAME> from the environment (for flags that make no sense there). */
  noEnv?: boolean
}
export type Spec = Record<string, OptionSpec>

type ValueOf<O extends OptionSpec> = O['type'] extends 'boolean' ? boolean : O['multiple'] extends true ? string[] : string | undefined
export type Options<S extends Spec> = { readonly [K in keyof S]: ValueOf<S[K]> }

export interface Loaded<S extends Spec> {
  options: Options<S>
  positionals: readonly string[]
  /** The config file that was read, if any. */
  configFile?: string
}

/** Options every command accepts. */
export const commonSpec = {
  json: { type: 'boolean', help: 'print data as JSON', noEnv: true },
  config: { type: 'string', help: 'JSON config file (keys are the long flag names)' },
  help: { type: 'boolean', short: 'h', help: 'show this help', noEnv: true },
} as const satisfies Spec

function envName(key: string): string {
  return 'EG_' + key.replace(/-/g, '_').toUpperCase()
}

/** Read a JSON config file; a missing or malformed file is a clear error, never a stack trace. */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (e) {
    throw errors.config(`${path}: cannot read config file: ${(e as Error).message}`)
  }
  try {
    const v: unknown = JSON.parse(text)
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('top level must be an object')
    return v as Record<string, unknown>
  } catch (e) {
    throw errors.config(`${path}: invalid JSON config: ${(e as Error).message}`)
  }
}

/**
 * Parse argv for a command. `section` picks a sub-object of the config file (e.g. "agent") whose keys
 * override top-level keys, so one file can serve several roles.
 */
export function loadOptions<S extends Spec>(
  argv: readonly string[],
  spec: S,
  opts: { env?: NodeJS.ProcessEnv; section?: string; allowPositionals?: boolean } = {},
): Loaded<S & typeof commonSpec> {
  const env = opts.env ?? process.env
  const full = { ...commonSpec, ...spec } as S & typeof commonSpec
  const parseOpts: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {}
  for (const [k, o] of Object.entries(full as Spec)) {
    parseOpts[k] = { type: o.type, ...(o.multiple ? { multiple: true } : {}), ...(o.short ? { short: o.short } : {}) }
  }
  let parsed: { values: Record<string, unknown>; positionals: string[] }
  try {
    parsed = parseArgs({ args: [...argv], options: parseOpts, allowPositionals: opts.allowPositionals ?? true, strict: true }) as typeof parsed
  } catch (e) {
    throw errors.usage((e as Error).message.replace(/\. To specify a positional.*$/s, ''))
  }
  const configPath = (parsed.values.config as string | undefined) ?? env[envName('config')]
  let file: Record<string, unknown> = {}
  if (configPath) {
    const raw = readConfigFile(configPath)
    const sec = opts.section && typeof raw[opts.section] === 'object' && raw[opts.section] !== null ? (raw[opts.section] as Record<string, unknown>) : {}
    file = { ...raw, ...sec }
  }
  const out: Record<string, unknown> = {}
  for (const [k, o] of Object.entries(full as Spec)) {
    let v: unknown = o.default ?? (o.type === 'boolean' ? false : o.multiple ? [] : undefined)
    if (k in file && k !== 'config') v = coerce(k, o, file[k], `config file ${configPath}`)
    const e = o.noEnv ? undefined : env[envName(k)]
    if (e !== undefined && e !== '') v = coerce(k, o, o.multiple ? e.split(',') : e, `environment ${envName(k)}`)
    if (parsed.values[k] !== undefined) v = parsed.values[k]
    out[k] = Array.isArray(v) ? Object.freeze([...v]) : v
  }
  return Object.freeze({
    options: Object.freeze(out) as Options<S & typeof commonSpec>,
    positionals: Object.freeze([...parsed.positionals]),
    ...(configPath ? { configFile: configPath } : {}),
  })
}

function coerce(key: string, o: OptionSpec, v: unknown, where: string): unknown {
  if (o.type === 'boolean') {
    if (typeof v === 'boolean') return v
    if (v === 'true' || v === '1' || v === 'yes') return true
    if (v === 'false' || v === '0' || v === 'no') return false
    throw errors.config(`${where}: ${key} must be a boolean`)
  }
  if (o.multiple) {
    const arr = Array.isArray(v) ? v : [v]
    if (!arr.every((x) => typeof x === 'string' || typeof x === 'number')) throw errors.config(`${where}: ${key} must be a list of strings`)
    return arr.map(String)
  }
  if (typeof v === 'string' || typeof v === 'number') return String(v)
  throw errors.config(`${where}: ${key} must be a string`)
}

/** `--help` text for a spec. */
export function helpText(usage: string, spec: Spec): string {
  const full: Spec = { ...spec, ...commonSpec }
  const lines = [usage, '', 'Options:']
  for (const [k, o] of Object.entries(full)) {
    const flag = `  ${o.short ? `-${o.short}, ` : ''}--${k}${o.type === 'string' ? ' VALUE' : ''}`
    lines.push(flag.padEnd(32) + (o.help ?? '') + (o.default !== undefined && o.default !== false ? ` (default ${String(o.default)})` : ''))
  }
  return lines.join('\n') + '\n'
}

// ---- typed value parsers used by commands after loadOptions ----

/** A whole number within [min, max]. */
export function intOption(name: string, v: string | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def
  if (!/^-?\d+$/.test(v)) throw errors.config(`--${name} must be a whole number, got ${JSON.stringify(v)}`)
  const n = Number(v)
  if (n < min || n > max) throw errors.config(`--${name} must be between ${min} and ${max}, got ${n}`)
  return n
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }

/** `500ms`, `30s`, `5m`, `4h`, `7d`, `2w` -> milliseconds; undefined when `v` is not a duration. */
export function parseDuration(v: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/.exec(v.trim())
  if (!m) return undefined
  return Math.round(Number(m[1]) * UNIT_MS[m[2]!]!)
}

export function durationOption(name: string, v: string | undefined, defMs: number): number {
  if (v === undefined) return defMs
  const ms = parseDuration(v)
  if (ms === undefined) throw errors.config(`--${name} must be a duration like 30s, 5m, 4h, 7d; got ${JSON.stringify(v)}`)
  return ms
}
