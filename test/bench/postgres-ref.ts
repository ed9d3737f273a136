// The Postgres reference: how fast this machine's Postgres takes event-shaped rows from Node,
// measured two ways on one connection into an unpartitioned copy of `events` (same columns,
// same primary key and BRIN index):
//   - COPY … FROM STDIN (text format), 10,000 rows per statement, through a small submittable
//     for the `pg` client (pg-copy-streams is not installed; this speaks the same protocol);
//   - the multi-row INSERT … SELECT FROM unnest($1::uuid[], …) ON CONFLICT DO NOTHING RETURNING
//     that server/db/events-store.ts uses, 10,000 rows per statement.
// Payloads are built before the clock starts: this measures Postgres, not string building.
import { randomUUID } from "node:crypto";
import pg from "pg";

/** A `pg` submittable that runs COPY … FROM STDIN and streams `chunks` as its data. */
class CopyIn {
  callback: ((err: Error | null, rows?: number) => void) | undefined;
  private error: Error | null = null;
  private rows = 0;
  constructor(readonly text: string, private readonly chunks: Buffer[]) {}
  submit(connection: { query(text: string): void }): void {
    connection.query(this.text);
  }
  handleCopyInResponse(connection: { sendCopyFromChunk(b: Buffer): void; endCopyFrom(): void }): void {
    for (const chunk of this.chunks) connection.sendCopyFromChunk(chunk);
    connection.endCopyFrom();
  }
  handleCommandComplete(msg: { text?: string }): void {
    this.rows = Number(/(\d+)$/.exec(msg.text ?? "")?.[1] ?? 0);
  }
  handleReadyForQuery(): void {
    this.callback?.(this.error, this.rows);
  }
  handleError(err: Error): void {
    this.error = err;
  }
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyData(): void {}
}

function copyIn(client: pg.Client, text: string, chunks: Buffer[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const submittable = new CopyIn(text, chunks);
    submittable.callback = (err, rows) => (err ? reject(err) : resolve(rows ?? 0));
    void client.query(submittable as unknown as pg.QueryConfig);
  });
}

const COLUMNS: [name: string, type: string][] = [
  ["site_id", "uuid"], ["ts", "timestamptz"], ["event_id", "text"], ["name", "text"], ["visitor_id", "int8"], ["session_id", "int8"],
  ["hostname", "text"], ["pathname", "text"], ["title", "text"], ["referrer", "text"], ["referrer_source", "text"], ["referrer_medium", "text"],
  ["utm_source", "text"], ["utm_medium", "text"], ["utm_campaign", "text"], ["utm_term", "text"], ["utm_content", "text"], ["click_id", "text"],
  ["country", "text"], ["region", "text"], ["city", "text"], ["browser", "text"], ["browser_version", "text"], ["os", "text"], ["os_version", "text"],
  ["device_type", "text"], ["screen", "text"], ["language", "text"], ["classification", "int2"], ["props", "jsonb"], ["revenue", "numeric"], ["received_at", "timestamptz"],
];

function row(siteId: string, i: number, base: number): unknown[] {
  const ts = new Date(base + i).toISOString();
  return [
    siteId, ts, randomUUID(), "pageview", String(1_000_000_000 + i), String(2_000_000_000 + (i >> 3)),
    "shop.example.com", `/docs/page-${i % 50}`, `Page ${i % 50}`, i % 3 === 0 ? "https://www.google.com/" : "", i % 3 === 0 ? "Google" : "", i % 3 === 0 ? "search" : "direct",
    "", "", "", "", "", "",
    "DE", "", "", "Chrome", "126.0.0.0", "Windows", "10", "desktop", "1920x1080", "en-GB", 1, "{}", null, ts,
  ];
}

function copyLine(values: unknown[]): string {
  return values.map((v) => (v === null ? "\\N" : String(v))).join("\t") + "\n";
}

export interface PostgresReference {
  copyRowsPerSec: number;
  copyRows: number;
  copyMs: number;
  insertRowsPerSec: number;
  insertRows: number;
  insertMs: number;
  chunkRows: number;
}

export async function measurePostgres(databaseUrl: string, opts = { copyChunks: 20, insertChunks: 10, chunkRows: 10_000 }): Promise<PostgresReference> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query("drop table if exists bench_ref_copy, bench_ref_insert");
    await client.query("create table bench_ref_copy (like events including defaults including indexes including constraints)");
    await client.query("create table bench_ref_insert (like events including defaults including indexes including constraints)");
    const siteId = randomUUID();
    const base = Date.now() - 3600_000;

    // COPY payloads: one buffer per statement (sent as 64 KiB CopyData messages).
    const copyPayloads: Buffer[][] = [];
    for (let c = 0; c < opts.copyChunks; c++) {
      let text = "";
      for (let i = 0; i < opts.chunkRows; i++) text += copyLine(row(siteId, c * opts.chunkRows + i, base));
      const buf = Buffer.from(text);
      const parts: Buffer[] = [];
      for (let o = 0; o < buf.length; o += 65_536) parts.push(buf.subarray(o, o + 65_536));
      copyPayloads.push(parts);
    }
    const copySql = `copy bench_ref_copy (${COLUMNS.map(([c]) => c).join(", ")}) from stdin`;
    // One warm-up statement (not timed) so the first measured one does not pay for catalog lookups.
    await copyIn(client, copySql, copyPayloads[0]);
    await client.query("truncate bench_ref_copy");
    let copyRows = 0;
    const copyStart = performance.now();
    for (const parts of copyPayloads) copyRows += await copyIn(client, copySql, parts);
    const copyMs = performance.now() - copyStart;

    // INSERT … SELECT FROM unnest: the statement shape events-store.ts sends.
    const insertSql = `insert into bench_ref_insert (${COLUMNS.map(([c]) => c).join(", ")})
select ${COLUMNS.map(([c, t]) => (t === "jsonb" ? `${c}::jsonb` : c)).join(", ")}
from unnest(${COLUMNS.map(([, t], i) => `$${i + 1}::${t === "jsonb" ? "text" : t}[]`).join(", ")}) as t(${COLUMNS.map(([c]) => c).join(", ")})
on conflict (site_id, ts, event_id) do nothing
returning site_id, ts, event_id`;
    const insertParams: unknown[][][] = [];
    for (let c = 0; c < opts.insertChunks + 1; c++) {
      const columns = COLUMNS.map(() => new Array<unknown>(opts.chunkRows));
      for (let i = 0; i < opts.chunkRows; i++) {
        const values = row(siteId, c * opts.chunkRows + i, base);
        for (let k = 0; k < columns.length; k++) columns[k][i] = values[k];
      }
      insertParams.push(columns);
    }
    await client.query(insertSql, insertParams[opts.insertChunks]); // warm-up, not timed
    await client.query("truncate bench_ref_insert");
    let insertRows = 0;
    const insertStart = performance.now();
    for (let c = 0; c < opts.insertChunks; c++) insertRows += (await client.query(insertSql, insertParams[c])).rowCount ?? 0;
    const insertMs = performance.now() - insertStart;

    await client.query("drop table if exists bench_ref_copy, bench_ref_insert");
    return {
      copyRowsPerSec: copyRows / (copyMs / 1000),
      copyRows,
      copyMs,
      insertRowsPerSec: insertRows / (insertMs / 1000),
      insertRows,
      insertMs,
      chunkRows: opts.chunkRows,
    };
  } finally {
    await client.end();
  }
}
