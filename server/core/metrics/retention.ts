// Retention of metric points (per definition retention_days; 0 falls back to the organisation's
// default_metric_retention_days, and 0 there keeps points for ever). Two ways, cheapest first:
//
// 1. Whole daily partitions of metric_points are dropped when every metric that has data, in
//    every organisation, has a finite retention: partitions of days before the earliest cutoff
//    (that of the longest-kept metric) hold nothing any metric may keep. One metric kept for ever
//    stops all drops.
// 2. Then, per site and metric with a finite retention, older points are deleted a day at a
//    time, with their hourly rollups and the series that have no point left (which frees room
//    under max_cardinality). Rollups share the points' retention, so every aggregation of a
//    period answers from the same data.
import type { MikroORM } from "@mikro-orm/postgresql";
import type { Pool } from "pg";
import { MetricDefinition } from "../../db/entities/index.js";
import { deleteMetricDataBefore, metricsWithSeries } from "../../db/metric-points-store.js";
import { dropPartitionsBefore } from "../../db/partitions.js";
import { getSettings } from "../management/settings.js";

const DAY_MS = 86_400_000;

export interface RetentionOutcome {
  droppedPartitions: string[];
  deletedPoints: number;
}

/** Days each organisation keeps each metric's points (0 = for ever). */
async function retentionDays(orm: MikroORM, organisationIds: string[]): Promise<Map<string, { byMetric: Map<string, number>; fallback: number }>> {
  const em = orm.em.fork();
  const out = new Map<string, { byMetric: Map<string, number>; fallback: number }>();
  for (const organisationId of organisationIds) {
    const fallback = (await getSettings(em, organisationId)).values.metricRetentionDays;
    const definitions = await em.find(MetricDefinition, { organisationId, deletedAt: null });
    out.set(organisationId, { fallback, byMetric: new Map(definitions.map((d) => [d.name, d.retentionDays > 0 ? d.retentionDays : fallback])) });
  }
  return out;
}

export async function applyMetricRetention(pool: Pool, orm: MikroORM, now: number): Promise<RetentionOutcome> {
  const pairs = await metricsWithSeries(pool);
  const days = await retentionDays(orm, [...new Set(pairs.map((p) => p.organisationId))]);
  // A metric whose definition was deleted keeps its points for the organisation's default.
  const withCutoffs = pairs.map((pair) => {
    const org = days.get(pair.organisationId)!;
    const keep = org.byMetric.get(pair.metric) ?? org.fallback;
    return { ...pair, cutoff: keep > 0 ? new Date(now - keep * DAY_MS) : undefined };
  });
  let droppedPartitions: string[] = [];
  if (withCutoffs.length > 0 && withCutoffs.every((p) => p.cutoff)) {
    const earliest = Math.min(...withCutoffs.map((p) => p.cutoff!.getTime()));
    droppedPartitions = await dropPartitionsBefore(pool, "metric_points", new Date(earliest));
  }
  let deletedPoints = 0;
  for (const pair of withCutoffs) {
    if (pair.cutoff) deletedPoints += await deleteMetricDataBefore(pool, pair.siteId, pair.metric, pair.cutoff);
  }
  return { droppedPartitions, deletedPoints };
}
