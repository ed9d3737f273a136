// A bounded memo for hot paths (visitor ids, sanitised URLs, URL parts). Two generations of
// Maps: keys go into the young one; when it holds `size` keys it becomes the old one and the
// previous old one is dropped whole. A key found in the old generation moves to the young one,
// so recently used keys survive. Every operation is O(1): evicting the oldest key of one Map with
// `keys().next()` looked the same but scans the deleted slots V8 leaves at the front of the table,
// and cost about 33 µs per miss once the Map was full.

export class BoundedCache<V> {
  private young = new Map<string, V>();
  private old = new Map<string, V>();

  /** Remembers at least the last `size` keys used, and never more than twice that. */
  constructor(private readonly size: number) {}

  /** The value for `key`, computed (and remembered) when it is not known. */
  get(key: string, compute: () => V): V {
    let value = this.young.get(key);
    if (value !== undefined) return value;
    value = this.old.get(key);
    if (value === undefined) value = compute();
    this.set(key, value);
    return value;
  }

  /** Keys held now (for tests and diagnostics). */
  get length(): number {
    return this.young.size + this.old.size;
  }

  private set(key: string, value: V): void {
    if (this.young.size >= this.size) {
      this.old = this.young;
      this.young = new Map();
    }
    this.young.set(key, value);
  }
}
