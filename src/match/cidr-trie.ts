/**
 * Binary prefix trie over IPv4 or IPv6 addresses given as 32-bit words. Nodes live in typed
 * arrays (two child indexes and a value per node) so a trie of a million prefixes is a few
 * flat buffers instead of a million objects, and a lookup is at most 32 or 128 array reads.
 *
 * Values are non-negative integers chosen by the caller (rule references). A lookup reports
 * every prefix on the path, shortest first, so the caller can apply longest-prefix-wins while
 * skipping prefixes whose rule is switched off.
 */
const NO_NODE = 0;
const NO_VALUE = -1;

export class CidrTrie {
  readonly bits: 32 | 128;
  private left: Int32Array;
  private right: Int32Array;
  private values: Int32Array;
  private nodeCount = 1; // node 0 is the root
  private prefixCount = 0;

  constructor(bits: 32 | 128, initialNodes = 64) {
    this.bits = bits;
    this.left = new Int32Array(initialNodes);
    this.right = new Int32Array(initialNodes);
    this.values = new Int32Array(initialNodes).fill(NO_VALUE);
  }

  get size(): number {
    return this.prefixCount;
  }

  /** The value stored at exactly this prefix, or -1. */
  get(words: Uint32Array, prefix: number): number {
    let node = 0;
    for (let i = 0; i < prefix; i++) {
      node = bitAt(words, i) === 0 ? this.left[node]! : this.right[node]!;
      if (node === NO_NODE) return NO_VALUE;
    }
    return this.values[node]!;
  }

  /** Stores `value` at the prefix, replacing what was there. */
  set(words: Uint32Array, prefix: number, value: number): void {
    let node = 0;
    for (let i = 0; i < prefix; i++) {
      const children = bitAt(words, i) === 0 ? this.left : this.right;
      let next = children[node]!;
      if (next === NO_NODE) {
        next = this.allocate();
        // allocate() may have grown (replaced) the arrays
        (bitAt(words, i) === 0 ? this.left : this.right)[node] = next;
      }
      node = next;
    }
    if (this.values[node] === NO_VALUE) this.prefixCount++;
    this.values[node] = value;
  }

  /**
   * Writes the values of every stored prefix containing the address into `outValues`, and
   * their prefix lengths into `outPrefixes`, shortest first; returns how many. The arrays must
   * hold bits + 1 entries. Allocates nothing.
   */
  matches(words: Uint32Array, outValues: Int32Array, outPrefixes: Uint8Array): number {
    let count = 0;
    let node = 0;
    for (let i = 0; ; i++) {
      const value = this.values[node]!;
      if (value !== NO_VALUE) {
        outValues[count] = value;
        outPrefixes[count] = i;
        count++;
      }
      if (i === this.bits) return count;
      node = bitAt(words, i) === 0 ? this.left[node]! : this.right[node]!;
      if (node === NO_NODE) return count;
    }
  }

  /** Calls visit for every stored prefix (for export and inspection, not the hot path). */
  forEach(visit: (words: Uint32Array, prefix: number, value: number) => void): void {
    const words = new Uint32Array(this.bits / 32);
    const walk = (node: number, depth: number): void => {
      const value = this.values[node]!;
      if (value !== NO_VALUE) visit(words.slice(), depth, value);
      if (depth === this.bits) return;
      const wordIndex = depth >>> 5;
      const mask = 1 << (31 - (depth & 31));
      const l = this.left[node]!;
      const r = this.right[node]!;
      if (l !== NO_NODE) {
        words[wordIndex] = (words[wordIndex]! & ~mask) >>> 0;
        walk(l, depth + 1);
      }
      if (r !== NO_NODE) {
        words[wordIndex] = (words[wordIndex]! | mask) >>> 0;
        walk(r, depth + 1);
        words[wordIndex] = (words[wordIndex] & ~mask) >>> 0;
      }
    };
    walk(0, 0);
  }

  private allocate(): number {
    if (this.nodeCount === this.left.length) {
      const capacity = this.left.length * 2;
      const grow = (old: Int32Array, fill: number): Int32Array => {
        const next = new Int32Array(capacity).fill(fill);
        next.set(old);
        return next;
      };
      this.left = grow(this.left, NO_NODE);
      this.right = grow(this.right, NO_NODE);
      this.values = grow(this.values, NO_VALUE);
    }
    return this.nodeCount++;
  }
}

function bitAt(words: Uint32Array, index: number): number {
  return (words[index >>> 5]! >>> (31 - (index & 31))) & 1;
}
