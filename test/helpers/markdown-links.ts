// Relative links of a markdown file and the heading anchors a page offers, for the docs link test.
// Only what the docs use: inline links and images, reference definitions, HTML href/src; code (fenced
// blocks and `spans`) is skipped, since paths written there are text, not links.

export interface Link {
  line: number
  target: string
}

/** Blanks inline code spans (which may wrap lines), keeping every offset and line break. */
function blankCodeSpans(text: string): string {
  return text.replace(/(`+)[\s\S]*?\1/g, (m) => m.replace(/[^\n]/g, ' '))
}

/** Lines outside fenced code blocks, with their 1-based numbers. */
function proseLines(text: string): Array<[number, string]> {
  const out: Array<[number, string]> = []
  let fence: string | undefined
  text.split('\n').forEach((line, i) => {
    const m = /^\s{0,3}(`{3,}|~{3,})/.exec(line)
    if (m) {
      if (!fence) fence = m[1]
      else if (m[1]!.startsWith(fence[0]!) && m[1]!.length >= fence.length) fence = undefined
      return
    }
    if (!fence) out.push([i + 1, line])
  })
  return out
}

/** Every link target in `text` (URLs with a scheme and mailto included; the caller filters). */
export function markdownLinks(text: string): Link[] {
  const links: Link[] = []
  const lines = proseLines(text)
  // A link's text may wrap onto the next line ([matcher\n  section](#x)), so join lines per paragraph.
  let para: Array<[number, string]> = []
  const flush = (): void => {
    if (!para.length) return
    const joined = blankCodeSpans(para.map(([, l]) => l).join('\n'))
    const lineAt = (offset: number): number => para[joined.slice(0, offset).split('\n').length - 1]![0]
    for (const m of joined.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) links.push({ line: lineAt(m.index!), target: m[1]! })
    for (const m of joined.matchAll(/^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/gm)) links.push({ line: lineAt(m.index!), target: m[1]! })
    for (const m of joined.matchAll(/\b(?:href|src)="([^"]+)"/g)) links.push({ line: lineAt(m.index!), target: m[1]! })
    para = []
  }
  for (const [n, l] of lines) {
    if (l.trim() === '') flush()
    else para.push([n, l])
  }
  flush()
  return links
}

/** GitHub's anchor for a heading text: lower case, punctuation dropped, each space a `-`. */
export function githubSlug(heading: string): string {
  const text = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/<[^>]+>/g, '')
    .toLowerCase()
  return text.replace(/[^\p{L}\p{M}\p{Nd}\p{Nl}\p{Pc}\- ]/gu, '').replace(/ /g, '-')
}

/** The anchors of a page's headings, with GitHub's `-1`, `-2` suffixes for repeated ones. */
export function headingAnchors(text: string): Set<string> {
  const seen = new Map<string, number>()
  const anchors = new Set<string>()
  for (const [, line] of proseLines(text)) {
    const m = /^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)
    if (!m) continue
    const base = githubSlug(m[1]!)
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    anchors.add(n === 0 ? base : `${base}-${n}`)
  }
  return anchors
}
