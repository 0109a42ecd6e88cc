import { DEFAULTS } from '../config/defaults.js';
import { errorMessage } from '../errors.js';
import { isIP } from 'node:net';
import { parseCidr, type ParsedCidr } from '../match/ip.js';
import { tryParseRuleName } from '../match/name.js';

/**
 * The list formats operators already have (pure parsing, no I/O):
 * - hosts:   `0.0.0.0 ads.example.com other.example` -> those exact names (as Pi-hole and
 *            AdGuard Home read hosts files); the address is ignored.
 * - domains: one name per line -> the name and its subdomains; `*.name` means the same.
 * - adblock: `||name^` -> name and subdomains; `|name^` -> that name only; `@@||name^` -> an
 *            exception (allow); rules with paths, regexes, cosmetic or unsupported modifiers
 *            cannot be judged on a name and are skipped.
 * - cidr:    one address or prefix per line.
 * Comments: `#` (and `!` in adblock lists), whole-line or after whitespace.
 */
export type ListFormat = 'hosts' | 'domains' | 'adblock' | 'cidr';
export const LIST_FORMATS: readonly ListFormat[] = ['hosts', 'domains', 'adblock', 'cidr'];

export interface SkippedLine {
  line: number;
  text: string;
  reason: string;
}

export interface ParsedList {
  format: ListFormat;
  suffix: string[];
  exact: string[];
  allowSuffix: string[];
  cidrs: ParsedCidr[];
  /** Lines that were not rules and not comments, counted; the first few kept for the report. */
  skippedCount: number;
  skipped: SkippedLine[];
}

const SKIPPED_KEPT = 20;

/** Names hosts files carry for the machine itself, never rules. */
const HOSTS_SELF_NAMES = new Set([
  'localhost',
  'localhost.localdomain',
  'local',
  'broadcasthost',
  'ip6-localhost',
  'ip6-loopback',
  'ip6-localnet',
  'ip6-mcastprefix',
  'ip6-allnodes',
  'ip6-allrouters',
  'ip6-allhosts',
  '0.0.0.0',
]);

/** Adblock modifiers that do not narrow a rule below "this name": safe to apply at DNS. */
const ADBLOCK_NEUTRAL_MODIFIERS = new Set(['important', 'all', 'document', 'doc', 'popup']);

/** Guesses the format from the first lines that are not comments. */
export function detectFormat(text: string): ListFormat {
  let hosts = 0;
  let cidr = 0;
  let other = 0;
  let seen = 0;
  let start = 0;
  while (start < text.length && seen < 200) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    const line = text.slice(start, end).trim();
    start = end + 1;
    if (line === '') continue;
    if (line.startsWith('[Adblock') || line.startsWith('||') || line.startsWith('@@') || line.startsWith('|')) return 'adblock';
    if (line.startsWith('!') || line.startsWith('#')) continue;
    seen++;
    const tokens = line.split(/\s+/);
    const first = tokens[0] ?? '';
    if (tokens.length >= 2 && isIP(first) !== 0 && !(tokens[1] ?? '').startsWith('#')) hosts++;
    else if (isIP(first.split('/')[0] ?? '') !== 0) cidr++;
    else other++;
  }
  if (hosts > 0 && hosts >= cidr && hosts >= other) return 'hosts';
  if (cidr > 0 && cidr >= other) return 'cidr';
  return 'domains';
}

function stripComment(line: string, format: ListFormat): string {
  const first = line.charCodeAt(0);
  if (first === 0x23 /* # */ || (format === 'adblock' && first === 0x21) /* ! */) return '';
  // `[Adblock Plus 2.0]`: the adblock header names the syntax; it is not a rule.
  if (format === 'adblock' && first === 0x5b /* [ */ && line.endsWith(']')) return '';
  // Adblock rules may contain '#' (cosmetic rules) and are dropped elsewhere; other formats
  // allow a trailing comment after whitespace.
  if (format !== 'adblock') {
    const hash = line.search(/\s#/);
    if (hash !== -1) return line.slice(0, hash).trim();
  }
  return line;
}

function overCap(maxEntries: number): string {
  return `list holds more than ${maxEntries} entries`;
}

/** Parses one line into `out`; returns a reason when the line is not a rule. */
function parseLine(line: string, format: ListFormat, out: ParsedList, maxEntries: number): string | null {
  switch (format) {
    case 'hosts': {
      const tokens = line.split(/\s+/);
      if (tokens.length < 2 || isIP(tokens[0]!) === 0) return 'expected "address name..."';
      for (let i = 1; i < tokens.length; i++) {
        const token = tokens[i]!;
        if (HOSTS_SELF_NAMES.has(token.toLowerCase())) continue;
        const name = tryParseRuleName(token);
        if (name === null) return `"${token}" is not a valid name`;
        // One line may carry any number of names: keep to the cap name by name.
        if (entryCount(out) >= maxEntries) return overCap(maxEntries);
        out.exact.push(name);
      }
      return null;
    }
    case 'domains': {
      if (/\s/.test(line)) return 'expected one name per line';
      const name = tryParseRuleName(line.startsWith('*.') ? line.slice(2) : line);
      if (name === null) return `"${line}" is not a valid name`;
      out.suffix.push(name);
      return null;
    }
    case 'adblock':
      return parseAdblockLine(line, out);
    case 'cidr': {
      if (/\s/.test(line)) return 'expected one address or prefix per line';
      try {
        out.cidrs.push(parseCidr(line));
        return null;
      } catch (e: unknown) {
        return errorMessage(e);
      }
    }
  }
}

function parseAdblockLine(line: string, out: ParsedList): string | null {
  if (line.includes('##') || line.includes('#@#') || line.includes('#?#')) return 'cosmetic rule';
  let rule = line;
  const isException = rule.startsWith('@@');
  if (isException) rule = rule.slice(2);
  const dollar = rule.indexOf('$');
  if (dollar !== -1) {
    for (const modifier of rule.slice(dollar + 1).split(',')) {
      if (!ADBLOCK_NEUTRAL_MODIFIERS.has(modifier.trim().toLowerCase())) return `unsupported modifier "${modifier}"`;
    }
    rule = rule.slice(0, dollar);
  }
  if (rule.startsWith('/') && rule.endsWith('/')) return 'regular expression rule';
  let match: 'suffix' | 'exact' = 'suffix';
  if (rule.startsWith('||')) rule = rule.slice(2);
  else if (rule.startsWith('|')) {
    rule = rule.slice(1);
    match = 'exact';
  }
  if (rule.endsWith('^|')) rule = rule.slice(0, -2);
  else if (rule.endsWith('^') || rule.endsWith('|')) rule = rule.slice(0, -1);
  if (rule.includes('/') || rule.includes('*') || rule.includes('^')) return 'rule with a path or wildcard';
  const name = tryParseRuleName(rule);
  if (name === null) return `"${rule}" is not a valid name`;
  if (isException) {
    if (match === 'exact') return 'exact-name exceptions are not supported';
    out.allowSuffix.push(name);
  } else if (match === 'exact') out.exact.push(name);
  else out.suffix.push(name);
  return null;
}

function emptyList(format: ListFormat): ParsedList {
  return { format, suffix: [], exact: [], allowSuffix: [], cidrs: [], skippedCount: 0, skipped: [] };
}

function entryCount(list: ParsedList): number {
  return list.suffix.length + list.exact.length + list.allowSuffix.length + list.cidrs.length;
}

/**
 * Parses a list, yielding to the event loop every `sliceLines` lines so a large list never
 * stalls the listeners. Stops at `maxEntries` (the rest is reported as skipped).
 */
export async function parseList(
  text: string,
  format: ListFormat | 'auto' = 'auto',
  options: { sliceLines?: number; maxEntries?: number; yieldEvery?: () => Promise<void> } = {},
): Promise<ParsedList> {
  const resolved = format === 'auto' ? detectFormat(text) : format;
  const out = emptyList(resolved);
  const sliceLines = options.sliceLines ?? DEFAULTS.snapshotBuildSliceEntries;
  const maxEntries = options.maxEntries ?? DEFAULTS.listMaxEntries;
  const pause = options.yieldEvery ?? (() => new Promise<void>((resolve) => setImmediate(resolve)));
  let start = 0;
  let lineNumber = 0;
  let inSlice = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    lineNumber++;
    const line = stripComment(text.slice(start, end).trim(), resolved);
    start = end + 1;
    if (line !== '') {
      const reason = entryCount(out) >= maxEntries ? overCap(maxEntries) : parseLine(line, resolved, out, maxEntries);
      if (reason !== null) {
        out.skippedCount++;
        if (out.skipped.length < SKIPPED_KEPT) out.skipped.push({ line: lineNumber, text: line.slice(0, 200), reason });
      }
    }
    if (++inSlice >= sliceLines) {
      inSlice = 0;
      await pause();
    }
  }
  return out;
}

export function countEntries(list: ParsedList): number {
  return entryCount(list);
}
