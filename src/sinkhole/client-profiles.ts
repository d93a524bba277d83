// What the sinkhole needs to decide per container (issue 16): client address -> the profile that
// container is held to, compiled. The agent rebuilds the map when containers or profiles change and
// swaps it in whole; the hot path does one Map lookup per query (none while the map is empty).
import type { CompiledProfile } from '../profiles/decide.js'
import type { ContainerInfo } from '../docker/types.js'

export interface ClientProfile {
  compiled: CompiledProfile
  /** The container, for learn records (its name and id). */
  container?: ContainerInfo
}

export type ClientProfiles = ReadonlyMap<string, ClientProfile>

export const NO_CLIENT_PROFILES: ClientProfiles = new Map()
