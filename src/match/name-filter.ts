/**
 * A small bit filter in front of the name maps. decide() walks a name from its last label to
 * its first, hashing as it goes, so each parent suffix (com, kakao.com, talk.kakao.com) gets
 * its hash in one pass without building a string. A suffix whose bits are not set is surely
 * not a key, and the lookup in a million-entry Map (several cache misses) is skipped; most
 * levels of most names end there. Both bits of a key sit in one 32-bit word, so a check costs
 * one memory access; 16 bits of filter per key keep false hits near 2%.
 */
const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** FNV-1a over the characters from last to first, the order decide() sees them. */
export function reverseNameHash(name: string): number {
  let h = FNV_OFFSET;
  for (let i = name.length - 1; i >= 0; i--) h = Math.imul(h ^ name.charCodeAt(i), FNV_PRIME);
  return h;
}

export function nextReverseHash(h: number, charCode: number): number {
  return Math.imul(h ^ charCode, FNV_PRIME);
}

export const REVERSE_HASH_START = FNV_OFFSET;
const BITS_PER_KEY = 16;

export class NameFilter {
  private readonly bits: Uint32Array;
  private readonly mask: number;

  constructor(expectedKeys: number) {
    let size = 1024;
    while (size < expectedKeys * BITS_PER_KEY) size *= 2;
    this.bits = new Uint32Array(size >>> 5);
    this.mask = size - 1;
  }

  /** Whether `keys` keys still keep the false-hit rate as designed. */
  fits(keys: number): boolean {
    return keys * BITS_PER_KEY <= this.mask + 1;
  }

  add(hash: number): void {
    this.bits[(hash & this.mask) >>> 5]! |= keyBits(hash);
  }

  mayHave(hash: number): boolean {
    const bits = keyBits(hash);
    return (this.bits[(hash & this.mask) >>> 5]! & bits) === bits;
  }
}

/** Two bit positions in the key's word, taken from hash bits the word index does not use. */
function keyBits(hash: number): number {
  const mixed = Math.imul(hash ^ (hash >>> 16), 0x2c1b3c6d);
  return (1 << (mixed >>> 27)) | (1 << ((mixed >>> 22) & 31));
}
