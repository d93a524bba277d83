// Imported first by the long-running DNS sinkhole: keeps V8's young generation at its starting size.
// The sinkhole's data lives in typed arrays outside the JS heap, and what it allocates per query dies
// at once, so a larger nursery buys nothing but resident memory: letting it grow (V8 doubles it under
// allocation pressure, up to 16 MiB per semi-space) cost ~6 MiB of RSS on a 1,000,000-name load
// (bench/sinkhole.ts --load-only). The flag is read at each young-generation resize, so setting it
// at run time takes effect; it only stops growth, so the worst case is more frequent (short) scavenges,
// which bench/sinkhole.ts measures as throughput and p99. Measured trade-off while forwarding at full
// load: in-flight queries now outlive two scavenges and are promoted (a mark-compact of 1-9 ms about
// every half second, RSS ~110 MiB); restoring V8's growth after the load gave no better p99 on this
// machine (5-24 ms at 15k forwarded qps either way) and ~140 MiB RSS, so the nursery stays small.
import { setFlagsFromString } from 'node:v8'

setFlagsFromString('--semi-space-growth-factor=1')
