// NDJSON bulk ingestion (002 §1 "ingest/bulk"): StartBulkIngest records the ingestion and queues
// it; a worker reads the source line by line, checks points in chunks exactly as IngestMetricPoints
// does, and stores each chunk in one transaction together with its checkpoint (lines read, points
// stored, bad lines). A retried job resumes after the last committed chunk, and points keep the
// ids and receive time of the first attempt (`<bulk id>-<line>`, the ingestion's receive time),
// so nothing is stored or counted twice.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { realpath, stat } from "node:fs/promises";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import { Readable } from "node:stream";
import type { Pool } from "pg";
import {
  type BulkIngestRow, bulkIngestNdjson, checkpointBulkIngest, createBulkIngest, finishBulkIngest, getBulkIngest, markBulkRunning, storeMetricPoints,
} from "../../db/metric-points-store.js";
import { InvalidArgumentError, NotFoundError } from "../errors.js";
import { canReachSite, type Principal } from "../roles.js";
import type { IntakeSite, MetricIntake } from "./intake.js";
import { ndjsonLines, parsePointLine } from "./ndjson.js";
import type { IncomingMetricPoint } from "./points.js";

export type BulkSource = { kind: "file"; path: string } | { kind: "url"; url: string } | { kind: "inline"; ndjson: Uint8Array };

/** What StartBulkIngest needs of the queue. */
export interface BulkScheduler {
  bulkIdFor(organisationId: string, requestId: string): string;
  enqueueBulk(bulkId: string): Promise<void>;
}

/** Bad lines kept per ingestion (GetBulkIngest lists the first 1,000). */
export const MAX_LINE_ERRORS = 1000;
/** Lines checked and stored per transaction. */
export const BULK_CHUNK_LINES = 1000;

/** A source that can never be read (missing file, HTTP 404): retrying will not help. */
export class BulkSourceError extends Error {
  override name = "BulkSourceError";
}

function inside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel) && !rel.startsWith(`..${sep}`));
}

/**
 * A file path the server may read: under one of `importRoots` (relative paths are read from the
 * first), after resolving symbolic links, and a regular file. Anything else is refused, so an
 * API key cannot make the server read arbitrary files.
 */
async function checkFilePath(path: string, importRoots: readonly string[]): Promise<string> {
  if (path.trim() === "") throw new InvalidArgumentError("file_path", "is required");
  if (importRoots.length === 0) throw new InvalidArgumentError("file_path", "is not accepted by this server (no import directory is configured); send the NDJSON inline or by URL");
  const candidate = isAbsolute(path) ? resolve(path) : resolve(importRoots[0], path);
  let real: string;
  try {
    real = await realpath(candidate);
  } catch {
    throw new InvalidArgumentError("file_path", `does not exist or cannot be read: ${path.slice(0, 200)}`);
  }
  const roots = await Promise.all(importRoots.map((root) => realpath(root).catch(() => resolve(root))));
  if (!roots.some((root) => inside(root, real))) {
    throw new InvalidArgumentError("file_path", `must be inside the server's import directory (${importRoots.join(", ")})`);
  }
  if (!(await stat(real)).isFile()) throw new InvalidArgumentError("file_path", "is not a regular file");
  return real;
}

function checkUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url.trim());
  } catch {
    throw new InvalidArgumentError("url", "must be an absolute http(s) URL");
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new InvalidArgumentError("url", "must be an http or https URL");
  if (parsed.href.length > 2000) throw new InvalidArgumentError("url", "must be at most 2,000 characters");
  return parsed.href;
}

export interface StartBulkInput {
  source: BulkSource | undefined;
  requestId: string;
  receivedAt: number;
}

/** Records a bulk ingestion and queues it; a retried start (same request id) returns the first. */
export async function startBulkIngest(pool: Pool, scheduler: BulkScheduler, principal: Principal, site: IntakeSite, input: StartBulkInput, importRoots: readonly string[]): Promise<BulkIngestRow> {
  const requestId = input.requestId.trim();
  if (requestId.length > 200) throw new InvalidArgumentError("request_id", "must be at most 200 characters");
  const source = input.source;
  if (!source) throw new InvalidArgumentError("source", "is required: file_path, url or ndjson");
  let kind: BulkIngestRow["sourceKind"];
  let location = "";
  let ndjson: Buffer | null = null;
  if (source.kind === "file") {
    kind = "file";
    location = await checkFilePath(source.path, importRoots);
  } else if (source.kind === "url") {
    kind = "url";
    location = checkUrl(source.url);
  } else {
    kind = "inline";
    if (source.ndjson.byteLength === 0) throw new InvalidArgumentError("ndjson", "is empty");
    ndjson = Buffer.from(source.ndjson);
  }
  const requestHash = createHash("sha256").update(site.id).update("\n").update(kind).update("\n").update(location).update("\n").update(ndjson ?? "").digest("hex");
  const id = scheduler.bulkIdFor(principal.organisationId, requestId);
  const { row, sameRequest } = await createBulkIngest(pool, {
    id,
    organisationId: principal.organisationId,
    siteId: site.id,
    requestId: requestId || null,
    requestHash,
    keyId: principal.keyId,
    actor: principal.actor,
    sourceKind: kind,
    source: location,
    ndjson,
    receivedAt: input.receivedAt,
  });
  if (!sameRequest) throw new InvalidArgumentError("request_id", "was already used for a different bulk ingestion");
  // Also for a retried start: the first attempt may have recorded the ingestion but failed to queue it.
  if (row.state === "pending") await scheduler.enqueueBulk(id);
  return row;
}

/** A bulk ingestion the caller may see; NotFound otherwise (including other organisations'). */
export async function readBulkIngest(pool: Pool, principal: Principal, jobId: string): Promise<BulkIngestRow> {
  const id = jobId.trim();
  if (id === "") throw new InvalidArgumentError("job_id", "is required");
  if (!/^bulk-[0-9a-f]{32}$/.test(id)) throw new InvalidArgumentError("job_id", "is not a bulk ingestion id (bulk-…)");
  const row = await getBulkIngest(pool, id);
  if (!row || row.organisationId !== principal.organisationId || !canReachSite(principal, row.siteId)) throw new NotFoundError(`bulk ingestion ${id}`, "job_id");
  return row;
}

export interface RunBulkDeps {
  pool: Pool;
  intake: MetricIntake;
  site: (siteId: string) => Promise<IntakeSite | undefined>;
  /** Reads URLs; the global fetch unless a test says. */
  fetch?: typeof fetch;
}

async function* sourceChunks(deps: RunBulkDeps, row: BulkIngestRow): AsyncGenerator<Uint8Array> {
  if (row.sourceKind === "inline") {
    const bytes = await bulkIngestNdjson(deps.pool, row.id);
    if (!bytes) throw new BulkSourceError("the inline NDJSON is no longer stored");
    yield bytes;
    return;
  }
  if (row.sourceKind === "file") {
    const stream = createReadStream(row.source);
    const opened = new Promise<void>((ok, fail) => {
      stream.once("open", () => ok());
      stream.once("error", (err: NodeJS.ErrnoException) => fail(err.code === "ENOENT" || err.code === "EACCES" || err.code === "EISDIR" ? new BulkSourceError(`cannot read the file: ${err.code}`) : err));
    });
    await opened;
    yield* stream as AsyncIterable<Buffer>;
    return;
  }
  const response = await (deps.fetch ?? fetch)(row.source, { redirect: "follow", signal: AbortSignal.timeout(10 * 60_000) });
  if (!response.ok || !response.body) {
    const message = `the URL answered HTTP ${response.status}`;
    // Server errors and throttling may pass; anything else will not.
    if (response.status >= 500 || response.status === 429 || response.status === 408) throw new Error(message);
    throw new BulkSourceError(message);
  }
  yield* Readable.fromWeb(response.body as import("node:stream/web").ReadableStream<Uint8Array>) as AsyncIterable<Buffer>;
}

/**
 * Runs (or resumes) a bulk ingestion to the end. Throws BulkSourceError when the source cannot be
 * read (the caller marks the ingestion failed), or any other error to be retried.
 */
export async function runBulkIngest(deps: RunBulkDeps, bulkId: string): Promise<BulkIngestRow | undefined> {
  const row = await getBulkIngest(deps.pool, bulkId);
  if (!row || row.state === "done" || row.state === "failed") return row;
  const site = await deps.site(row.siteId);
  if (!site) {
    await finishBulkIngest(deps.pool, bulkId, "failed", "the site was deleted");
    return getBulkIngest(deps.pool, bulkId);
  }
  await markBulkRunning(deps.pool, bulkId);
  // Auto-defined metrics are audited as the key that started the ingestion.
  const principal: Principal = { keyId: row.keyId, organisationId: row.organisationId, role: "analyst", siteIds: [], actor: row.actor };
  let errorsKept = row.lineErrors.length;
  let lineNumber = 0;
  let chunk: { line: number; point: IncomingMetricPoint }[] = [];
  let chunkErrors: { line: number; message: string }[] = [];

  const flush = async () => {
    const prepared = await deps.intake.prepare(site, principal, chunk.map((c) => c.point), {
      receivedAt: row.receivedAt,
      defaultPointId: (index) => `${bulkId}-${chunk[index].line}`,
      dryRun: false,
    });
    for (const e of prepared.errors) chunkErrors.push({ line: chunk[e.index].line, message: `${e.field}: ${e.message} [${e.reason}]` });
    chunkErrors.sort((a, b) => a.line - b.line);
    const kept = chunkErrors.slice(0, Math.max(0, MAX_LINE_ERRORS - errorsKept));
    const errorCount = chunkErrors.length;
    const linesRead = lineNumber;
    await storeMetricPoints(deps.pool, prepared.accepted.map((a) => a.point), {
      alsoInTransaction: (client, inserted) => checkpointBulkIngest(client, bulkId, linesRead, inserted, kept, errorCount),
    });
    errorsKept += kept.length;
    chunk = [];
    chunkErrors = [];
  };

  for await (const line of ndjsonLines(sourceChunks(deps, row))) {
    lineNumber++;
    if (lineNumber <= row.linesRead) continue;
    if (line.tooLong) chunkErrors.push({ line: lineNumber, message: "is longer than 64 KiB" });
    else if (line.text.trim() !== "") {
      const parsed = parsePointLine(line.text);
      if ("error" in parsed) chunkErrors.push({ line: lineNumber, message: parsed.error });
      else chunk.push({ line: lineNumber, point: parsed.point });
    }
    if (lineNumber % BULK_CHUNK_LINES === 0) await flush();
  }
  if (lineNumber > row.linesRead && (chunk.length > 0 || chunkErrors.length > 0 || lineNumber % BULK_CHUNK_LINES !== 0)) await flush();
  await finishBulkIngest(deps.pool, bulkId, "done");
  return getBulkIngest(deps.pool, bulkId);
}

/** Marks a bulk ingestion failed, with why. */
export async function failBulkIngest(pool: Pool, bulkId: string, reason: string): Promise<void> {
  await finishBulkIngest(pool, bulkId, "failed", reason);
}

/** The import directory under Beacon's data directory: where file_path sources must live by default. */
export function defaultImportRoot(dataDir: string): string {
  return join(dataDir, "imports");
}
