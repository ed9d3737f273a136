// Distinct-visitor sketches for rollups. Visitor ids are HMAC outputs, so their bits are already
// uniformly random and serve as the hash. A sketch holds the ids themselves while there are few
// (then counts are exact, and most rollup rows — a page in an hour — are small), and switches to
// a dense HyperLogLog with 2^15 registers (standard error 0.57%: 2% is 3.5 standard errors) when
// it grows past EXACT_LIMIT. Counts from a dense sketch are reported as approximate.

export const PRECISION = 15;
const REGISTERS = 1 << PRECISION;
/** Ids kept exactly before switching to registers (same 32 KiB either way). */
export const EXACT_LIMIT = 4096;

const KIND_EXACT = 1;
const KIND_DENSE = 2;
const MASK63 = (1n << 63n) - 1n;

export class VisitorSketch {
  private exact: Set<bigint> | null = new Set();
  private registers: Uint8Array | null = null;

  static fromIds(ids: Iterable<bigint | string>): VisitorSketch {
    const sketch = new VisitorSketch();
    for (const id of ids) sketch.add(typeof id === "bigint" ? id : BigInt(id));
    return sketch;
  }

  static decode(bytes: Uint8Array): VisitorSketch {
    const sketch = new VisitorSketch();
    if (bytes.length === 0) return sketch;
    if (bytes[0] === KIND_DENSE) {
      sketch.exact = null;
      sketch.registers = bytes.slice(1, 1 + REGISTERS);
      return sketch;
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let offset = 1; offset + 8 <= bytes.length; offset += 8) sketch.exact!.add(view.getBigUint64(offset));
    return sketch;
  }

  get isExact(): boolean {
    return this.exact !== null;
  }

  add(id: bigint): void {
    if (this.exact) {
      this.exact.add(id & MASK63);
      if (this.exact.size > EXACT_LIMIT) this.densify();
    } else {
      this.addToRegisters(id);
    }
  }

  merge(other: VisitorSketch): void {
    if (other.exact) {
      for (const id of other.exact) this.add(id);
      return;
    }
    if (this.exact) this.densify();
    const mine = this.registers!;
    const theirs = other.registers!;
    for (let i = 0; i < REGISTERS; i++) if (theirs[i] > mine[i]) mine[i] = theirs[i];
  }

  count(): number {
    if (this.exact) return this.exact.size;
    const registers = this.registers!;
    let sum = 0;
    let zeros = 0;
    for (let i = 0; i < REGISTERS; i++) {
      sum += 2 ** -registers[i];
      if (registers[i] === 0) zeros++;
    }
    const alpha = 0.7213 / (1 + 1.079 / REGISTERS);
    const estimate = (alpha * REGISTERS * REGISTERS) / sum;
    // Linear counting is more accurate while many registers are still empty.
    if (estimate <= 2.5 * REGISTERS && zeros > 0) return Math.round(REGISTERS * Math.log(REGISTERS / zeros));
    return Math.round(estimate);
  }

  encode(): Uint8Array {
    if (this.registers) {
      const out = new Uint8Array(1 + REGISTERS);
      out[0] = KIND_DENSE;
      out.set(this.registers, 1);
      return out;
    }
    const ids = [...this.exact!].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const out = new Uint8Array(1 + ids.length * 8);
    out[0] = KIND_EXACT;
    const view = new DataView(out.buffer);
    ids.forEach((id, i) => view.setBigUint64(1 + i * 8, id));
    return out;
  }

  private densify(): void {
    this.registers = new Uint8Array(REGISTERS);
    for (const id of this.exact!) this.addToRegisters(id);
    this.exact = null;
  }

  private addToRegisters(id: bigint): void {
    const value = id & MASK63;
    const index = Number(value & BigInt(REGISTERS - 1));
    // The remaining 48 bits fit a double exactly; rank = leading zeros among them + 1.
    const rest = Number(value >> BigInt(PRECISION));
    const width = 63 - PRECISION;
    const high = Math.floor(rest / 2 ** 32);
    const bitLength = high > 0 ? 64 - Math.clz32(high) : 32 - Math.clz32(rest >>> 0);
    const rank = width - bitLength + 1;
    if (rank > this.registers![index]) this.registers![index] = rank;
  }
}
