import { PortcullisError } from '../errors.js';
import { describeNameProblem, nameProblem, normalizeQueryName } from './name.js';

/**
 * A rule on one label under a fixed parent: `katalk-*.kgslb.com` matches
 * `katalk-fo6ld96d.kgslb.com` (and its subdomains) but not `www-daum-uj2suuqw.kgslb.com`. For
 * shared zones (a GSLB, a CDN) where the app owns some labels and other services own the rest:
 * a suffix rule on the zone would block them all, directly and as CNAME targets.
 */
export interface NamePattern {
  /** As written, normalised: `katalk-*.kgslb.com`. */
  text: string;
  /** The fixed part under the label: `kgslb.com`. */
  parent: string;
  /** What the label starts and ends with around the `*` (which stands for one or more characters). */
  prefix: string;
  suffix: string;
}

const WILDCARD = '*';

/** Whether a rule value is a label pattern (a `*` with other characters in its first label). */
export function isNamePattern(value: string): boolean {
  return value.includes(WILDCARD);
}

/**
 * Parses `prefix*suffix.parent`: one `*`, in the first label, beside at least one other
 * character; the parent has at least two labels (no pattern over a whole top-level domain).
 * Throws PCL_ERR_INVALID_NAME saying what is wrong.
 */
export function parseNamePattern(input: string): NamePattern {
  const text = normalizeQueryName(input.trim());
  const fail = (why: string): never => {
    throw new PortcullisError('PCL_ERR_INVALID_NAME', `"${input}" ${why}`, { details: { input, problem: 'pattern' } });
  };
  if (text === null) return fail('is empty');
  const dot = text.indexOf('.');
  const label = dot === -1 ? text : text.slice(0, dot);
  const parent = dot === -1 ? '' : text.slice(dot + 1);
  const star = label.indexOf(WILDCARD);
  if (star === -1 || text.indexOf(WILDCARD, star + 1) !== -1 || parent.includes(WILDCARD)) return fail('may hold one "*", in its first label only');
  if (label === WILDCARD) return fail(`is every subdomain: write the domain rule "${parent}" instead`);
  if (!parent.includes('.')) return fail('needs a parent of at least two labels under the "*" label');
  // The label with the `*` as one letter must make a valid name: the pattern can match real names.
  const problem = nameProblem(text.replace(WILDCARD, 'a'));
  if (problem !== null) return fail(describeNameProblem(problem));
  return { text, parent, prefix: label.slice(0, star), suffix: label.slice(star + 1) };
}

/** Whether `label` (one label, lower-case) fits the pattern's label. */
export function labelFits(pattern: Pick<NamePattern, 'prefix' | 'suffix'>, label: string): boolean {
  return label.length > pattern.prefix.length + pattern.suffix.length && label.startsWith(pattern.prefix) && label.endsWith(pattern.suffix);
}
