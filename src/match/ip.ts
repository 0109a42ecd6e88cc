import { isIPv4, isIPv6 } from 'node:net';
import { PortcullisError } from '../errors.js';

/**
 * Addresses as 32-bit words, most significant first: one word for IPv4, four for IPv6.
 * IPv4-mapped IPv6 (::ffff:a.b.c.d) is returned as IPv4, so a v4 rule matches a client that
 * shows up on a dual-stack socket.
 */
export interface ParsedIp {
  family: 4 | 6;
  words: Uint32Array;
}

export interface ParsedCidr extends ParsedIp {
  prefix: number;
}

function parseIPv4Words(text: string, out: Uint32Array, index: number): boolean {
  let value = 0;
  let part = 0;
  let digits = 0;
  let parts = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i === text.length ? 0x2e : text.charCodeAt(i);
    if (c === 0x2e) {
      if (digits === 0 || parts === 4) return false;
      value = value * 256 + part;
      parts++;
      part = 0;
      digits = 0;
      continue;
    }
    if (c < 0x30 || c > 0x39) return false;
    // Leading zeros are refused: 010 means octal to some parsers and decimal to others.
    if (digits === 1 && part === 0) return false;
    part = part * 10 + (c - 0x30);
    digits++;
    if (part > 255) return false;
  }
  if (parts !== 4) return false;
  out[index] = value >>> 0;
  return true;
}

function parseIPv6Words(text: string): Uint32Array | null {
  if (!isIPv6(text)) return null;
  // node:net has already checked the grammar; expand "::" and an embedded IPv4 tail.
  let head = text;
  const zone = head.indexOf('%');
  if (zone !== -1) head = head.slice(0, zone);
  const groups: number[] = [];
  const tail: number[] = [];
  const doubleColon = head.indexOf('::');
  const pushGroups = (part: string, into: number[]): boolean => {
    if (part === '') return true;
    for (const group of part.split(':')) {
      if (group.includes('.')) {
        const v4 = new Uint32Array(1);
        if (!parseIPv4Words(group, v4, 0)) return false;
        into.push(v4[0]! >>> 16, v4[0]! & 0xffff);
      } else {
        into.push(parseInt(group, 16));
      }
    }
    return true;
  };
  if (doubleColon === -1) {
    if (!pushGroups(head, groups)) return null;
  } else {
    if (!pushGroups(head.slice(0, doubleColon), groups)) return null;
    if (!pushGroups(head.slice(doubleColon + 2), tail)) return null;
    while (groups.length + tail.length < 8) groups.push(0);
    groups.push(...tail);
  }
  if (groups.length !== 8) return null;
  const words = new Uint32Array(4);
  for (let i = 0; i < 4; i++) words[i] = ((groups[2 * i]! << 16) | groups[2 * i + 1]!) >>> 0;
  return words;
}

function isV4Mapped(words: Uint32Array): boolean {
  return words[0] === 0 && words[1] === 0 && words[2] === 0xffff;
}

/**
 * The text of an IPv4-mapped IPv6 address as plain IPv4 (`::ffff:1.2.3.4` -> `1.2.3.4`), the
 * way a dual-stack socket reports IPv4 peers; any other text unchanged.
 */
export function unmapIpv4(address: string): string {
  return address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
}

/** Parses an IPv4 or IPv6 address (brackets and zone ids allowed); null when it is neither. */
export function parseIp(input: string): ParsedIp | null {
  let text = input;
  if (text.startsWith('[') && text.endsWith(']')) text = text.slice(1, -1);
  if (isIPv4(text)) {
    const words = new Uint32Array(1);
    return parseIPv4Words(text, words, 0) ? { family: 4, words } : null;
  }
  const words = parseIPv6Words(text);
  if (words === null) return null;
  if (isV4Mapped(words)) return { family: 4, words: Uint32Array.of(words[3]!) };
  return { family: 6, words };
}

/** The address with every bit past `prefix` cleared. */
export function maskWords(words: Uint32Array, prefix: number): Uint32Array {
  const out = new Uint32Array(words.length);
  for (let i = 0; i < words.length; i++) {
    const bitsInWord = Math.max(0, Math.min(32, prefix - i * 32));
    const mask = bitsInWord === 0 ? 0 : bitsInWord === 32 ? 0xffffffff : (0xffffffff << (32 - bitsInWord)) >>> 0;
    out[i] = (words[i]! & mask) >>> 0;
  }
  return out;
}

function sameWords(a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Parses `addr/prefix` (or a bare address, as a host route). Refuses host bits set beyond
 * the prefix unless `allowHostBits`, because `10.1.2.3/8` usually hides a typo.
 * An IPv4-mapped IPv6 prefix (::ffff:0:0/96 and longer) becomes the IPv4 prefix it covers.
 */
export function parseCidr(input: string, options: { allowHostBits?: boolean } = {}): ParsedCidr {
  const text = input.trim();
  const slash = text.indexOf('/');
  const addressText = slash === -1 ? text : text.slice(0, slash);
  const prefixText = slash === -1 ? null : text.slice(slash + 1);
  let words: Uint32Array | null;
  let family: 4 | 6;
  if (isIPv4(addressText)) {
    words = new Uint32Array(1);
    if (!parseIPv4Words(addressText, words, 0)) throw invalidCidr(input, 'address is not a valid IPv4 address');
    family = 4;
  } else {
    words = parseIPv6Words(addressText);
    if (words === null || addressText.includes('%')) throw invalidCidr(input, 'address is not a valid IPv4 or IPv6 address');
    family = 6;
  }
  const maxPrefix = family === 4 ? 32 : 128;
  let prefix = maxPrefix;
  if (prefixText !== null) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(prefixText)) throw invalidCidr(input, 'prefix length is not a number');
    prefix = Number(prefixText);
    if (prefix > maxPrefix) throw invalidCidr(input, `prefix length is above ${maxPrefix}`);
  }
  const masked = maskWords(words, prefix);
  if (!options.allowHostBits && !sameWords(masked, words)) {
    throw invalidCidr(input, `host bits are set; did you mean ${formatCidr({ family, words: masked, prefix })}?`);
  }
  if (family === 6 && prefix >= 96 && isV4Mapped(masked)) {
    return { family: 4, words: Uint32Array.of(masked[3]!), prefix: prefix - 96 };
  }
  return { family, words: masked, prefix };
}

function invalidCidr(input: string, why: string): PortcullisError {
  return new PortcullisError('PCL_ERR_INVALID_CIDR', `"${input}" is not a valid CIDR: ${why}`, { details: { input } });
}

export function formatIp(ip: ParsedIp): string {
  if (ip.family === 4) {
    const v = ip.words[0]!;
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  }
  const groups: number[] = [];
  for (const w of ip.words) groups.push(w >>> 16, w & 0xffff);
  // RFC 5952: compress the longest run (two or more) of zero groups, the first one on a tie.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

export function formatCidr(cidr: ParsedCidr): string {
  return `${formatIp(cidr)}/${cidr.prefix}`;
}
