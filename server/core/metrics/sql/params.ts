// Positional parameters for hand-built SQL: every value a request supplies goes through add(),
// which returns its placeholder; only fixed fragments from allow-lists are ever spliced in.
export class SqlParams {
  readonly values: unknown[] = [];

  /** The placeholder ($n) standing for `value`. */
  add(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}
