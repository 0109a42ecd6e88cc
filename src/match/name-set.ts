import { normalizeQueryName, parentSuffixStart } from './name.js';

/** A small set of suffix names (each covers its subdomains), matched on label boundaries. */
export class SuffixNameSet {
  private readonly names: ReadonlySet<string>;

  constructor(names: Iterable<string>) {
    this.names = new Set(names);
  }

  /** The listed name that `input` equals or is a subdomain of, or null. */
  match(input: string): string | null {
    const name = normalizeQueryName(input);
    if (name === null) return null;
    for (let start = 0; start !== -1; start = parentSuffixStart(name, start)) {
      const key = start === 0 ? name : name.slice(start);
      if (this.names.has(key)) return key;
    }
    return null;
  }
}
