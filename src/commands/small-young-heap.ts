// Imported first by the long-running DNS sinkhole: keeps V8's young generation at its starting size.
// The sinkhole's data lives in typed arrays outside the JS heap, and what it allocates per query dies
// at once, so a larger nursery buys nothing but resident memory: letting it grow (V8 doubles it under
// allocation pressure, up to 16 MiB per semi-space) cost ~6 MiB of RSS on a 1,000,000-name load
// (bench/sinkhole.ts --load-only). The flag is read at each young-generation resize, so setting it
// at run time takes effect; it only stops growth, so the worst case is more frequent (short) scavenges,
// which bench/sinkhole.ts measures as throughput and p99. In-flight forwarded queries do outlive
// scavenges with a nursery this small, so the forwarder keeps almost nothing per query on the JS heap
// (upstream.ts: one object, timeouts in typed arrays); with that, forwarding at full rate promotes
// ~0.1 MB/s and needs no mark-compact after the load.
import { setFlagsFromString } from 'node:v8'

setFlagsFromString('--semi-space-growth-factor=1')
