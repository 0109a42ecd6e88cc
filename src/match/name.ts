import { domainToASCII } from 'node:url';
import { DEFAULTS } from '../config/defaults.js';
import { PortcullisError } from '../errors.js';

/**
 * Names are normalised once, where they enter: lower-case, trailing dots removed, Unicode
 * mapped to punycode (IDNA). Two entry points, because the two jobs differ:
 *
 * - `normalizeQueryName` takes what a client sent (DNS qname, SNI, Host). It must never refuse
 *   to normalise a name that could still match a rule: a client that sends odd characters must
 *   not slip past a suffix rule by being "invalid". It returns null only for an empty name.
 * - `parseRuleName` takes what an operator or a list wrote. It is strict: a rule that could
 *   never match a real host name is an error the operator should see.
 */

const CODE_DOT = 0x2e;
/** Characters IDNA (UTS #46) maps to a full stop: ideographic, full-width and half-width. */
const IDNA_DOTS = /[\u3002\uff0e\uff61]/g;

/** True when every character is already in the normalised alphabet (a-z 0-9 - _ . *). */
function isPlainLowerAscii(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    const isLower = c >= 0x61 && c <= 0x7a;
    const isDigit = c >= 0x30 && c <= 0x39;
    if (!isLower && !isDigit && c !== 0x2d && c !== 0x5f && c !== CODE_DOT) return false;
  }
  return true;
}

function isAscii(name: string): boolean {
  for (let i = 0; i < name.length; i++) if (name.charCodeAt(i) > 0x7f) return false;
  return true;
}

/**
 * IDNA ToASCII, or '' when refused. node:url runs the name through the URL host parser, which
 * cuts it at / ? # \\, drops tabs and newlines and percent-decodes: `ü.a/b.kakao.com` would come
 * back as `xn--tda.a`. A name holding any of those is refused instead.
 */
function idnaToAscii(name: string): string {
  return /[\t\n\r#%/?\\]/.test(name) ? '' : domainToASCII(name);
}

function stripTrailingDots(name: string): string {
  let end = name.length;
  while (end > 0 && name.charCodeAt(end - 1) === CODE_DOT) end--;
  return end === name.length ? name : name.slice(0, end);
}

export function normalizeQueryName(input: string): string | null {
  let name = stripTrailingDots(input);
  if (name.length === 0) return null;
  if (isPlainLowerAscii(name)) return name;
  if (isAscii(name)) return name.toLowerCase();
  // Non-ASCII: IDNA maps full-width dots, compatibility forms and case the way resolvers and
  // TLS stacks do, so `ｋａｋａｏ。com` is seen as kakao.com. When IDNA refuses the name we still
  // lower-case it so a suffix rule keeps matching on its ASCII labels; the IDNA label
  // separators (。．｡) still separate labels there, or `x\0。kakao.com` would slip past.
  const ascii = idnaToAscii(name);
  name = ascii === '' ? name.replace(IDNA_DOTS, '.').toLowerCase() : ascii;
  name = stripTrailingDots(name);
  return name.length === 0 ? null : name;
}

export type NameProblem =
  | 'empty'
  | 'too-long'
  | 'empty-label'
  | 'label-too-long'
  | 'bad-character'
  | 'hyphen-at-label-edge'
  | 'idna'
  | 'numeric-tld';

const NAME_PROBLEM_TEXT: Record<NameProblem, string> = {
  empty: 'is empty',
  'too-long': `is longer than ${DEFAULTS.nameMaxLength} characters`,
  'empty-label': 'has an empty label (two dots in a row or a leading dot)',
  'label-too-long': `has a label longer than ${DEFAULTS.labelMaxLength} characters`,
  'bad-character': 'has a character outside letters, digits, "-" and "_"',
  'hyphen-at-label-edge': 'has a label that starts or ends with "-"',
  idna: 'is not a valid internationalised domain name',
  'numeric-tld': 'ends in an all-numeric label (an IP address is not a name)',
};

/** Checks an already-normalised name; returns the first problem or null. */
export function nameProblem(name: string): NameProblem | null {
  if (name.length === 0) return 'empty';
  if (name.length > DEFAULTS.nameMaxLength) return 'too-long';
  let labelStart = 0;
  let lastLabelNumeric = true;
  for (let i = 0; i <= name.length; i++) {
    const c = i === name.length ? CODE_DOT : name.charCodeAt(i);
    if (c === CODE_DOT) {
      const len = i - labelStart;
      if (len === 0) return 'empty-label';
      if (len > DEFAULTS.labelMaxLength) return 'label-too-long';
      if (name.charCodeAt(labelStart) === 0x2d || name.charCodeAt(i - 1) === 0x2d) return 'hyphen-at-label-edge';
      labelStart = i + 1;
      if (i < name.length) lastLabelNumeric = true;
      continue;
    }
    const isLower = c >= 0x61 && c <= 0x7a;
    const isDigit = c >= 0x30 && c <= 0x39;
    if (!isLower && !isDigit && c !== 0x2d && c !== 0x5f) return 'bad-character';
    if (!isDigit) lastLabelNumeric = false;
  }
  return lastLabelNumeric ? 'numeric-tld' : null;
}

export function describeNameProblem(problem: NameProblem): string {
  return NAME_PROBLEM_TEXT[problem];
}

/**
 * Parses a name an operator or list wrote. Returns the normalised name, or throws
 * PCL_ERR_INVALID_NAME saying what is wrong.
 */
export function parseRuleName(input: string): string {
  const text = input.trim();
  const name = normalizeQueryName(text);
  if (name === null) throw invalidName(input, 'empty');
  if (!isAscii(text) && idnaToAscii(stripTrailingDots(text)) === '') throw invalidName(input, 'idna');
  const problem = nameProblem(name);
  if (problem !== null) throw invalidName(input, problem);
  return name;
}

/** Like parseRuleName, but returns null instead of throwing (for bulk list parsing). */
export function tryParseRuleName(input: string): string | null {
  const name = normalizeQueryName(input);
  if (name === null) return null;
  return nameProblem(name) === null ? name : null;
}

function invalidName(input: string, problem: NameProblem): PortcullisError {
  return new PortcullisError('PCL_ERR_INVALID_NAME', `"${input}" ${NAME_PROBLEM_TEXT[problem]}`, {
    details: { input, problem },
  });
}

/**
 * Index where the next parent suffix starts, on a label boundary (for a.b.kakao.com from 0:
 * 2, the start of b.kakao.com), or -1 at the last label. Matchers walk a name most specific
 * first with it, without splitting the name into an array.
 */
export function parentSuffixStart(name: string, from: number): number {
  const dot = name.indexOf('.', from);
  return dot === -1 ? -1 : dot + 1;
}
