// The server's side of the ingest queues: one BullMQ job per buffered batch of accepted events
// (or metric points), and one per metric bulk ingestion.
import { randomUUID } from "node:crypto";
import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import type { AcceptedMetricPoint } from "../server/core/metrics/points.js";
import {
  INGEST_JOB_OPTIONS, type IngestBatchJob, ingestBatchJob, ingestBatchJobId, JOB_NAMES, METRIC_BULK_JOB_OPTIONS, type MetricBulkJob, metricBatchJobId, metricBulkId,
  IngestQueuedReports, type MetricPointsJob, QUEUES, type RawHit,
} from "./queues.js";

export interface IngestProducer {
  /** Resolves once Redis has the batch: the moment an event counts as accepted. */
  write(hits: RawHit[]): Promise<void>;
  /** Seconds the oldest batch still waiting for a worker has waited; 0 when none waits. */
  lagSeconds(): Promise<number>;
  close(): Promise<void>;
}

export function createIngestProducer(connection: Redis, prefix: string): IngestProducer {
  const queue = new Queue<IngestBatchJob>(QUEUES.ingest, { connection, prefix });
  const reports = new IngestQueuedReports(connection, prefix);
  return {
    async write(hits) {
      await queue.add(JOB_NAMES.ingestBatch, ingestBatchJob(hits), { ...INGEST_JOB_OPTIONS, jobId: ingestBatchJobId(hits) });
      reports.queued(hits.length);
    },
    async lagSeconds() {
      const [oldest] = await queue.getJobs(["wait", "prioritized", "delayed"], 0, 0, true);
      return oldest ? Math.max(0, (Date.now() - oldest.timestamp) / 1000) : 0;
    },
    async close() {
      await reports.flush();
      await queue.close();
    },
  };
}

/** The server's side of the metric queues: batches of accepted points, and bulk ingestions. */
export interface MetricProducer {
  /** Resolves once Redis has the batch: the moment a point counts as accepted. */
  writePoints(points: AcceptedMetricPoint[]): Promise<void>;
  /** The id of a new bulk ingestion (derived from the request id when there is one). */
  bulkIdFor(organisationId: string, requestId: string): string;
  /** Queues a recorded bulk ingestion; adding the same one twice is a no-op. */
  enqueueBulk(bulkId: string): Promise<void>;
  close(): Promise<void>;
}

export function createMetricProducer(connection: Redis, prefix: string): MetricProducer {
  const points = new Queue<MetricPointsJob>(QUEUES.metricPoints, { connection, prefix });
  const bulk = new Queue<MetricBulkJob>(QUEUES.metricBulk, { connection, prefix });
  return {
    async writePoints(batch) {
      await points.add(JOB_NAMES.metricBatch, { points: batch }, { ...INGEST_JOB_OPTIONS, jobId: metricBatchJobId(batch) });
    },
    bulkIdFor: (organisationId, requestId) => metricBulkId(organisationId, requestId, () => randomUUID().replaceAll("-", "")),
    async enqueueBulk(bulkId) {
      await bulk.add(JOB_NAMES.metricBulk, { bulkId }, { ...METRIC_BULK_JOB_OPTIONS, jobId: bulkId });
    },
    async close() {
      await Promise.all([points.close(), bulk.close()]);
    },
  };
}
