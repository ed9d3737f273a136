// What stands between a fast producer (the pub/sub relay) and one slow stream subscriber: a ring
// buffer of at most `capacity` items. When it is full the oldest waiting item is dropped and
// counted, so a subscriber that stops reading costs at most `capacity` items of memory, and when
// it reads again it gets the newest items and the number it missed.

export class BoundedQueue<T> {
  private readonly items: (T | undefined)[];
  private head = 0;
  private size = 0;
  private droppedCount = 0;
  private wake: (() => void) | undefined;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new Error(`queue capacity must be a positive integer, got ${capacity}`);
    this.items = new Array<T | undefined>(capacity);
  }

  get length(): number {
    return this.size;
  }

  /** Items dropped so far because the queue was full. */
  get dropped(): number {
    return this.droppedCount;
  }

  push(item: T): void {
    if (this.size === this.capacity) {
      // Full: the oldest item makes room.
      this.items[this.head] = undefined;
      this.head = (this.head + 1) % this.capacity;
      this.size--;
      this.droppedCount++;
    }
    this.items[(this.head + this.size) % this.capacity] = item;
    this.size++;
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** The oldest item, or undefined when empty. */
  shift(): T | undefined {
    if (this.size === 0) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) % this.capacity;
    this.size--;
    return item;
  }

  /**
   * The oldest item, waiting for one if the queue is empty; undefined when `timeoutMs` passed or
   * `signal` aborted first. One reader at a time.
   */
  async take(timeoutMs: number, signal: AbortSignal): Promise<T | undefined> {
    if (this.size > 0) return this.shift();
    if (signal.aborted) return undefined;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        if (this.wake === done) this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal.addEventListener("abort", done, { once: true });
      this.wake = done;
    });
    return signal.aborted ? undefined : this.shift();
  }
}
