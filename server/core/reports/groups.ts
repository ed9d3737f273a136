// Partial aggregates of one report group, from any source (raw events, hourly or daily rollups),
// merged by key and turned into the requested metrics at the end.
import type { MetricName } from "./catalog.js";
import { VisitorSketch } from "./sketch.js";

/** A distinct count: exact from SQL, or a sketch that can be merged with others. */
export class Distinct {
  private exactCount = 0;
  private sketch: VisitorSketch | null = null;

  static ofCount(n: number): Distinct {
    const d = new Distinct();
    d.exactCount = n;
    return d;
  }

  static ofSketch(sketch: VisitorSketch): Distinct {
    const d = new Distinct();
    d.sketch = sketch;
    return d;
  }

  /** Merging needs sketches on both sides; a plain count can only stand alone. */
  merge(other: Distinct): void {
    if (other.sketch === null && other.exactCount === 0) return;
    if (this.sketch === null && this.exactCount === 0) {
      this.exactCount = other.exactCount;
      this.sketch = other.sketch ? other.sketch.clone() : null;
      return;
    }
    if (!this.sketch || !other.sketch) throw new Error("cannot merge plain distinct counts");
    this.sketch.merge(other.sketch);
  }

  count(): number {
    return this.sketch ? this.sketch.count() : this.exactCount;
  }

  get approximate(): boolean {
    return this.sketch !== null && !this.sketch.isExact;
  }
}

export class GroupAggregate {
  pageviews = 0;
  events = 0;
  revenue = 0;
  visitors = new Distinct();
  conversions = new Distinct();
  visits = 0;
  bounces = 0;
  duration = 0;
  sessionPageviews = 0;

  constructor(readonly key: string[]) {}

  addEvents(pageviews: number, events: number, revenue: number, visitors: Distinct, conversions: Distinct): void {
    this.pageviews += pageviews;
    this.events += events;
    this.revenue += revenue;
    this.visitors.merge(visitors);
    this.conversions.merge(conversions);
  }

  addSessions(visits: number, bounces: number, duration: number, sessionPageviews: number): void {
    this.visits += visits;
    this.bounces += bounces;
    this.duration += duration;
    this.sessionPageviews += sessionPageviews;
  }

  get approximate(): boolean {
    return this.visitors.approximate || this.conversions.approximate;
  }

  /**
   * The metric's value. `baseVisitors` is the visitor count conversion rates divide by (the
   * group's own, or the whole report's for goal rows).
   */
  value(metric: MetricName, baseVisitors?: number): number {
    switch (metric) {
      case "pageviews":
        return this.pageviews;
      case "events":
        return this.events;
      case "visitors":
        return this.visitors.count();
      case "visits":
        return this.visits;
      case "bounce_rate":
        return this.visits === 0 ? 0 : this.bounces / this.visits;
      case "visit_duration":
        return this.visits === 0 ? 0 : this.duration / this.visits;
      case "views_per_visit":
        return this.visits === 0 ? 0 : this.sessionPageviews / this.visits;
      case "conversions":
        return this.conversions.count();
      case "conversion_rate": {
        const base = baseVisitors ?? this.visitors.count();
        return base === 0 ? 0 : this.conversions.count() / base;
      }
      case "revenue":
        return this.revenue;
    }
  }
}

export class GroupMap {
  private readonly groups = new Map<string, GroupAggregate>();

  get(key: string[]): GroupAggregate {
    const id = JSON.stringify(key);
    let group = this.groups.get(id);
    if (!group) {
      group = new GroupAggregate(key);
      this.groups.set(id, group);
    }
    return group;
  }

  find(key: string[]): GroupAggregate | undefined {
    return this.groups.get(JSON.stringify(key));
  }

  values(): GroupAggregate[] {
    return [...this.groups.values()];
  }
}
