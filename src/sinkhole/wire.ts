// DNS wire format for the sinkhole's hot path: a strict, allocation-light query parser and builders
// for the few replies the sinkhole makes itself, so a blocked answer never goes through a generic
// encode/decode of the whole packet. Pure: bytes in, bytes out. (RFC 1035 4.1, RFC 6891 for EDNS.)
import { formatIp } from '../policy/net.js'

export const QR = 0x8000
export const AA = 0x0400
export const TC = 0x0200
export const RD = 0x0100
export const RA = 0x0080
export const CD = 0x0010

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const
export const TYPE = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, OPT: 41, SVCB: 64, HTTPS: 65, IXFR: 251, AXFR: 252, ANY: 255 } as const
export const CLASS_IN = 1
/** Our advertised EDNS UDP payload size (DNS flag day 2020 value). */
export const EDNS_UDP_SIZE = 1232
export const HEADER = 12

export interface Edns {
  /** Requester's UDP payload size, at least 512 (RFC 6891 6.2.3). */
  udpSize: number
  version: number
  /** DNSSEC OK bit (RFC 3225), echoed in our OPT. */
  do: boolean
  /** Offset of the OPT record's RDLENGTH field, and the end of its RDATA (options). */
  rdLenOff: number
  end: number
}

/** A parsed query: only what the sinkhole needs. Offsets point into the original buffer. */
export interface Query {
  id: number
  flags: number
  opcode: number
  /** Lower-case, no trailing dot; '' for the root. */
  qname: string
  qtype: number
  qclass: number
  /** Offset just after QTYPE/QCLASS: bytes [12, qEnd) are the question exactly as the client sent it. */
  qEnd: number
  edns?: Edns
}

export type Parsed =
  | { ok: true; query: Query }
  /** drop: too short to answer or not a query (QR set: never answer a response, no reflection loops). */
  | { ok: false; drop: true }
  | { ok: false; drop: false; rcode: number; /** question end when the question itself was readable */ qEnd?: number }

const MAX_NAME = 255

/** Scratch space for the query name: labels are copied in lower-cased, dot-joined, then sliced once. */
const nameScratch = Buffer.allocUnsafe(MAX_NAME)

/**
 * Read an uncompressed name (questions never need pointers; a pointer there could only point into
 * the header). Returns the text, ASCII lower-cased (entries are ASCII; other bytes are kept as latin1
 * characters, one per byte), and the offset after it; undefined when malformed.
 */
function readQName(buf: Buffer, off: number): { name: string; end: number } | undefined {
  let total = 0
  let n = 0
  for (;;) {
    if (off >= buf.length) return undefined
    const len = buf[off]!
    if (len === 0) return { name: n === 0 ? '' : nameScratch.toString('latin1', 0, n), end: off + 1 }
    if (len > 63) return undefined // pointer (0xc0) or reserved label types (0x40, 0x80)
    total += len + 1
    if (total + 1 > MAX_NAME || off + 1 + len > buf.length) return undefined
    if (n > 0) nameScratch[n++] = 0x2e
    for (let i = off + 1, e = off + 1 + len; i < e; i++) {
      const c = buf[i]!
      nameScratch[n++] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c
    }
    off += 1 + len
  }
}

/** Skip a possibly compressed name without following pointers (so no loop is possible). */
export function skipName(buf: Buffer, off: number): number {
  for (let hops = 0; hops < 128; hops++) {
    if (off >= buf.length) return -1
    const len = buf[off]!
    if (len === 0) return off + 1
    if ((len & 0xc0) === 0xc0) return off + 2 <= buf.length ? off + 2 : -1
    if (len > 63) return -1
    off += 1 + len
  }
  return -1
}

/**
 * Decode a possibly compressed name (for CNAME targets in upstream answers). Pointers must go strictly
 * backwards, which makes compression loops impossible; undefined when malformed.
 */
export function readName(buf: Buffer, off: number): string | undefined {
  let name = ''
  let total = 0
  let limit = off
  for (let hops = 0; hops < 256; hops++) {
    if (off >= buf.length) return undefined
    const len = buf[off]!
    if (len === 0) return name.toLowerCase()
    if ((len & 0xc0) === 0xc0) {
      if (off + 1 >= buf.length) return undefined
      const ptr = ((len & 0x3f) << 8) | buf[off + 1]!
      if (ptr >= limit) return undefined
      off = limit = ptr
      continue
    }
    if (len > 63 || off + 1 + len > buf.length) return undefined
    total += len + 1
    if (total > MAX_NAME) return undefined
    const label = buf.toString('latin1', off + 1, off + 1 + len)
    name = name === '' ? label : name + '.' + label
    off += 1 + len
  }
  return undefined
}

/** Parse a query packet strictly. Never throws. */
export function parseQuery(buf: Buffer): Parsed {
  if (buf.length < HEADER) return { ok: false, drop: true }
  const flags = buf.readUInt16BE(2)
  if (flags & QR) return { ok: false, drop: true }
  const opcode = (flags >> 11) & 0xf
  if (opcode !== 0) return { ok: false, drop: false, rcode: RCODE.NOTIMP }
  const qd = buf.readUInt16BE(4)
  const an = buf.readUInt16BE(6)
  const ns = buf.readUInt16BE(8)
  const ar = buf.readUInt16BE(10)
  if (qd !== 1) return { ok: false, drop: false, rcode: RCODE.FORMERR }
  const qn = readQName(buf, HEADER)
  if (!qn || qn.end + 4 > buf.length) return { ok: false, drop: false, rcode: RCODE.FORMERR }
  const qEnd = qn.end + 4
  const query: Query = {
    id: buf.readUInt16BE(0),
    flags,
    opcode,
    qname: qn.name,
    qtype: buf.readUInt16BE(qn.end),
    qclass: buf.readUInt16BE(qn.end + 2),
    qEnd,
  }
  // Walk the other sections only to find (and validate) the EDNS OPT record.
  let off = qEnd
  const total = an + ns + ar
  for (let i = 0; i < total; i++) {
    const start = off
    off = skipName(buf, off)
    if (off < 0 || off + 10 > buf.length) return { ok: false, drop: false, rcode: RCODE.FORMERR, qEnd }
    const type = buf.readUInt16BE(off)
    const rdlen = buf.readUInt16BE(off + 8)
    if (off + 10 + rdlen > buf.length) return { ok: false, drop: false, rcode: RCODE.FORMERR, qEnd }
    if (type === TYPE.OPT) {
      // RFC 6891 6.1.1: only in the additional section, only one, owner is the root.
      if (i < an + ns || query.edns || buf[start] !== 0 || off !== start + 1) return { ok: false, drop: false, rcode: RCODE.FORMERR, qEnd }
      query.edns = { udpSize: Math.max(512, buf.readUInt16BE(off + 2)), version: buf[off + 5]!, do: (buf[off + 6]! & 0x80) !== 0, rdLenOff: off + 8, end: off + 10 + rdlen }
    }
    off += 10 + rdlen
  }
  return { ok: true, query }
}

/**
 * The query to send upstream: EDNS options are hop-by-hop (a client's COOKIE belongs to the client
 * and us, RFC 7873; CLIENT-SUBNET would leak the client's network), so they are dropped when the OPT
 * record ends the packet (the usual layout); UDP size and DO bit are kept. Otherwise `buf` itself.
 */
export function withoutEdnsOptions(buf: Buffer, q: Query): Buffer {
  const e = q.edns
  if (!e || e.end === e.rdLenOff + 2 || e.end !== buf.length) return buf
  const out = Buffer.allocUnsafe(e.rdLenOff + 2)
  buf.copy(out, 0, 0, e.rdLenOff)
  out.writeUInt16BE(0, e.rdLenOff)
  return out
}

/** An address record to put in a synthesized answer. */
export interface Rdata {
  type: number
  data: Buffer
}

export interface ReplyOptions {
  rcode: number
  aa?: boolean
  answers?: Rdata[]
  ttl: number
  /** Add a synthetic SOA in the authority section (negative answers), minimum = ttl. */
  soa?: boolean
  /** Extended DNS Error (RFC 8914) to include when the client sent EDNS. */
  ede?: { code: number; text?: string }
}

const SOA_TAIL = (() => {
  // mname "sinkhole.egress-guard.invalid." rname "hostmaster.egress-guard.invalid."; serial, refresh,
  // retry, expire; minimum is patched per reply.
  const enc = (n: string): Buffer => Buffer.concat([...n.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'ascii')])), Buffer.from([0])])
  return Buffer.concat([enc('sinkhole.egress-guard.invalid'), enc('hostmaster.egress-guard.invalid'), Buffer.from([0, 0, 0, 1, 0, 0, 0x0e, 0x10, 0, 0, 0x03, 0x84, 0, 0x09, 0x3a, 0x80])])
})()

/**
 * Build a reply to a parsed query: header, the client's question copied byte for byte (its case
 * preserved), answers owned by the question name (a 0xc00c pointer), optional SOA, optional OPT.
 */
export function buildReply(buf: Buffer, q: Query, o: ReplyOptions): Buffer {
  const answers = o.answers ?? []
  const qlen = q.qEnd - HEADER
  const ede = q.edns && o.ede ? Buffer.from(o.ede.text ?? '', 'utf8').subarray(0, 200) : undefined
  let size = HEADER + qlen
  for (const a of answers) size += 12 + a.data.length
  if (o.soa) size += 12 + SOA_TAIL.length + 4
  if (q.edns) size += 11 + (o.ede ? 6 + ede!.length : 0)
  const out = Buffer.allocUnsafe(size)
  out.writeUInt16BE(q.id, 0)
  out.writeUInt16BE(QR | (q.flags & (RD | CD)) | RA | (o.aa ? AA : 0) | (o.rcode & 0xf), 2)
  out.writeUInt16BE(1, 4)
  out.writeUInt16BE(answers.length, 6)
  out.writeUInt16BE(o.soa ? 1 : 0, 8)
  out.writeUInt16BE(q.edns ? 1 : 0, 10)
  buf.copy(out, HEADER, HEADER, q.qEnd)
  let off = q.qEnd
  for (const a of answers) {
    out.writeUInt16BE(0xc00c, off)
    out.writeUInt16BE(a.type, off + 2)
    out.writeUInt16BE(CLASS_IN, off + 4)
    out.writeUInt32BE(o.ttl, off + 6)
    out.writeUInt16BE(a.data.length, off + 10)
    a.data.copy(out, off + 12)
    off += 12 + a.data.length
  }
  if (o.soa) {
    out.writeUInt16BE(0xc00c, off)
    out.writeUInt16BE(TYPE.SOA, off + 2)
    out.writeUInt16BE(CLASS_IN, off + 4)
    out.writeUInt32BE(o.ttl, off + 6)
    out.writeUInt16BE(SOA_TAIL.length + 4, off + 10)
    SOA_TAIL.copy(out, off + 12)
    out.writeUInt32BE(o.ttl, off + 12 + SOA_TAIL.length)
    off += 12 + SOA_TAIL.length + 4
  }
  if (q.edns) off = writeOpt(out, off, q.edns.do, 0, o.ede && ede ? { code: o.ede.code, text: ede } : undefined)
  return out
}

function writeOpt(out: Buffer, off: number, dnssecOk: boolean, extRcode: number, ede?: { code: number; text: Buffer }): number {
  out[off] = 0 // root owner
  out.writeUInt16BE(TYPE.OPT, off + 1)
  out.writeUInt16BE(EDNS_UDP_SIZE, off + 3)
  out[off + 5] = extRcode
  out[off + 6] = 0 // version 0
  out.writeUInt16BE(dnssecOk ? 0x8000 : 0, off + 7)
  const rdlen = ede ? 6 + ede.text.length : 0
  out.writeUInt16BE(rdlen, off + 9)
  off += 11
  if (ede) {
    // RFC 8914 2: OPTION-CODE 15, INFO-CODE (16 bits), EXTRA-TEXT (UTF-8, not NUL-terminated).
    out.writeUInt16BE(15, off)
    out.writeUInt16BE(2 + ede.text.length, off + 2)
    out.writeUInt16BE(ede.code, off + 4)
    ede.text.copy(out, off + 6)
    off += 6 + ede.text.length
  }
  return off
}

/**
 * An error reply (FORMERR, NOTIMP, REFUSED, SERVFAIL, BADVERS) built from whatever of the request is
 * readable: the header always (callers check length >= 12), the question when `qEnd` is known. It is
 * never larger than the request plus an 11-byte OPT, so it cannot amplify a spoofed flood.
 */
export function buildError(buf: Buffer, rcode: number, qEnd?: number, edns?: { do: boolean; extRcode?: number; /** RFC 8914 INFO-CODE, no text */ ede?: number }): Buffer {
  const qlen = qEnd !== undefined ? qEnd - HEADER : 0
  const out = Buffer.allocUnsafe(HEADER + qlen + (edns ? 11 + (edns.ede !== undefined ? 6 : 0) : 0))
  const flags = buf.readUInt16BE(2)
  out.writeUInt16BE(buf.readUInt16BE(0), 0)
  out.writeUInt16BE(QR | (flags & (0x7800 | RD | CD)) | RA | (rcode & 0xf), 2)
  out.writeUInt16BE(qEnd !== undefined ? 1 : 0, 4)
  out.writeUInt32BE(0, 6)
  out.writeUInt16BE(edns ? 1 : 0, 10)
  if (qEnd !== undefined) buf.copy(out, HEADER, HEADER, qEnd)
  if (edns) writeOpt(out, HEADER + qlen, edns.do, edns.extRcode ?? 0, edns.ede !== undefined ? { code: edns.ede, text: Buffer.alloc(0) } : undefined)
  return out
}

/** A copy of a reply cut to header + question with TC set, for a UDP client whose limit it exceeds. */
export function truncateReply(resp: Buffer): Buffer {
  const qEnd = questionEnd(resp)
  const end = qEnd < 0 ? HEADER : qEnd
  const out = Buffer.from(resp.subarray(0, end))
  out.writeUInt16BE(out.readUInt16BE(2) | TC, 2)
  out.writeUInt16BE(qEnd < 0 ? 0 : 1, 4)
  out.writeUInt32BE(0, 6)
  out.writeUInt16BE(0, 10)
  return out
}

/** Offset after the (single) question of a packet, -1 when malformed. */
export function questionEnd(buf: Buffer): number {
  if (buf.length < HEADER || buf.readUInt16BE(4) !== 1) return -1
  const e = skipName(buf, HEADER)
  return e < 0 || e + 4 > buf.length ? -1 : e + 4
}

export interface RecordRef {
  section: 'answer' | 'authority' | 'additional'
  /** Owner name offset (a name, possibly compressed). */
  nameOff: number
  type: number
  klass: number
  ttl: number
  ttlOff: number
  rdOff: number
  rdLen: number
}

/** Section numbers of RecordWalker.section. */
export const SECTION = { answer: 0, authority: 1, additional: 2 } as const
const SECTION_NAMES = ['answer', 'authority', 'additional'] as const

/**
 * Walks the resource records of a message (after the question) without allocating: `reset(buf)`,
 * then `next()` until it returns false; the fields describe the current record. Upstream answers go
 * through here twice (policy check, cache lifetime) on the forwarding hot path, so one walker object
 * per caller is reused instead of an array of record objects per answer. `malformed` tells a clean
 * end from a broken message.
 */
export class RecordWalker {
  private buf: Buffer = Buffer.alloc(0)
  private off = 0
  private left0 = 0
  private left1 = 0
  private left2 = 0
  malformed = false
  /** SECTION.answer, .authority or .additional. */
  section = 0
  /** Owner name offset (a name, possibly compressed). */
  nameOff = 0
  type = 0
  klass = 0
  ttl = 0
  ttlOff = 0
  rdOff = 0
  rdLen = 0

  /** Start on a message; false (and `malformed`) when its header or question section is broken. */
  reset(buf: Buffer): boolean {
    this.buf = buf
    this.malformed = true
    this.left0 = this.left1 = this.left2 = 0
    if (buf.length < HEADER) return false
    const qd = buf.readUInt16BE(4)
    let off = HEADER
    for (let i = 0; i < qd; i++) {
      off = skipName(buf, off)
      if (off < 0 || off + 4 > buf.length) return false
      off += 4
    }
    this.off = off
    this.left0 = buf.readUInt16BE(6)
    this.left1 = buf.readUInt16BE(8)
    this.left2 = buf.readUInt16BE(10)
    this.malformed = false
    return true
  }

  /** Move to the next record; false at the end or when malformed (see `malformed`). */
  next(): boolean {
    if (this.malformed) return false
    if (this.left0 > 0) {
      this.left0--
      this.section = 0
    } else if (this.left1 > 0) {
      this.left1--
      this.section = 1
    } else if (this.left2 > 0) {
      this.left2--
      this.section = 2
    } else return false
    const buf = this.buf
    const nameOff = this.off
    const off = skipName(buf, nameOff)
    if (off < 0 || off + 10 > buf.length) return this.broken()
    const rdLen = buf.readUInt16BE(off + 8)
    if (off + 10 + rdLen > buf.length) return this.broken()
    this.nameOff = nameOff
    this.type = buf.readUInt16BE(off)
    this.klass = buf.readUInt16BE(off + 2)
    this.ttl = buf.readUInt32BE(off + 4)
    this.ttlOff = off + 4
    this.rdOff = off + 10
    this.rdLen = rdLen
    this.off = off + 10 + rdLen
    return true
  }

  private broken(): false {
    this.malformed = true
    this.left0 = this.left1 = this.left2 = 0
    return false
  }
}

/** Every resource record of a message (after the question), as objects. Undefined when malformed. */
export function records(buf: Buffer): RecordRef[] | undefined {
  const w = new RecordWalker()
  if (!w.reset(buf)) return undefined
  const out: RecordRef[] = []
  while (w.next()) out.push({ section: SECTION_NAMES[w.section]!, nameOff: w.nameOff, type: w.type, klass: w.klass, ttl: w.ttl, ttlOff: w.ttlOff, rdOff: w.rdOff, rdLen: w.rdLen })
  return w.malformed ? undefined : out
}

/**
 * Is the (possibly compressed) name at `off` equal to `name` (lower-case, no trailing dot, '' for
 * the root), ASCII case-insensitively (RFC 4343)? readName() without building the string: checked
 * for every upstream answer. Malformed names are never equal.
 */
export function nameEquals(buf: Buffer, off: number, name: string): boolean {
  let pos = 0
  let limit = off
  for (let hops = 0; hops < 256; hops++) {
    if (off >= buf.length) return false
    const len = buf[off]!
    if (len === 0) return pos === name.length
    if ((len & 0xc0) === 0xc0) {
      if (off + 1 >= buf.length) return false
      const ptr = ((len & 0x3f) << 8) | buf[off + 1]!
      if (ptr >= limit) return false
      off = limit = ptr
      continue
    }
    if (len > 63 || off + 1 + len > buf.length) return false
    if (pos > 0) {
      if (name.charCodeAt(pos) !== 0x2e) return false
      pos++
    }
    if (pos + len > name.length) return false
    for (let i = off + 1, e = off + 1 + len; i < e; i++) {
      const c = buf[i]!
      if ((c >= 0x41 && c <= 0x5a ? c | 0x20 : c) !== name.charCodeAt(pos++)) return false
    }
    off += 1 + len
  }
  return false
}

/** Text of an A/AAAA record's address (canonical form), or undefined for other lengths. */
export function addressText(buf: Buffer, off: number, len: number): string | undefined {
  if (len === 4) return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`
  if (len === 16) return formatIp({ family: 6, bytes: new Uint8Array(buf.subarray(off, off + 16)) })
  return undefined
}

/** Header rcode of a message. */
export function rcodeOf(buf: Buffer): number {
  return buf.readUInt16BE(2) & 0xf
}

const TYPE_NAMES: Record<number, string> = { 1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 41: 'OPT', 64: 'SVCB', 65: 'HTTPS', 255: 'ANY' }

/** Mnemonic of a query type for logs and hits (`TYPE123` for unknown ones, RFC 3597). */
export function typeName(t: number): string {
  return TYPE_NAMES[t] ?? `TYPE${t}`
}
