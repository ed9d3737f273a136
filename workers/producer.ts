// The server's side of the ingest queue: one BullMQ job per buffered batch of accepted events.
import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { INGEST_JOB_OPTIONS, type IngestBatchJob, ingestBatchJobId, JOB_NAMES, QUEUES, type RawHit } from "./queues.js";

export interface IngestProducer {
  /** Resolves once Redis has the batch: the moment an event counts as accepted. */
  write(hits: RawHit[]): Promise<void>;
  close(): Promise<void>;
}

export function createIngestProducer(connection: Redis, prefix: string): IngestProducer {
  const queue = new Queue<IngestBatchJob>(QUEUES.ingest, { connection, prefix });
  return {
    async write(hits) {
      await queue.add(JOB_NAMES.ingestBatch, { hits }, { ...INGEST_JOB_OPTIONS, jobId: ingestBatchJobId(hits) });
    },
    close: () => queue.close(),
  };
}
