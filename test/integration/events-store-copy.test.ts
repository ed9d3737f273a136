// storeEvents' two paths: a batch of new events is COPYed straight into `events` (no staging
// table, no RETURNING); a batch holding an event already stored, or one event twice, fails that
// COPY with a unique violation and is stored again through the staging table, counting and adding
// to its sessions only the events that were new. One connection (a pool of one), so what the
// tests see on it is what storeEvents did on it. Real Postgres, this file's own database.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type StoredEvent, storeEventBatches, storeEvents } from "../../server/db/events-store.js";
import { createMigratedTestOrm, type MigratedTestOrm } from "../support/db.js";
import { storedEvent } from "../support/stored-event.js";

const SITE = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f";
const T0 = Date.parse("2026-11-21T09:00:00Z");
const MINUTE = 60_000;
let db: MigratedTestOrm;
let pool: pg.Pool;

beforeAll(async () => {
  db = await createMigratedTestOrm("events-store-copy");
  pool = new pg.Pool({ connectionString: db.url, max: 1 });
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

function event(eventId: string, sessionId: bigint, minute: number, over: Partial<StoredEvent> = {}): StoredEvent {
  const ts = T0 + minute * MINUTE;
  return storedEvent({ siteId: SITE, eventId, ts, receivedAt: ts, sessionId, sessionStartedAt: T0, pathname: `/${eventId}`, ...over });
}

/** Whether the slow path ever ran on the pool's one connection: it creates the staging table there. */
async function staged(): Promise<boolean> {
  const { rows } = await pool.query("select count(*)::int as n from pg_class where relname = 'events_stage' and relnamespace = pg_my_temp_schema()");
  return rows[0].n === 1;
}

async function session(sessionId: bigint): Promise<unknown> {
  const { rows } = await pool.query("select pageviews, events, entry_page, exit_page from sessions where site_id = $1 and session_id = $2", [SITE, sessionId.toString()]);
  return rows[0];
}

async function stored(sessionId: bigint): Promise<string[]> {
  const { rows } = await pool.query("select event_id from events where site_id = $1 and session_id = $2 order by ts", [SITE, sessionId.toString()]);
  return rows.map((r: { event_id: string }) => r.event_id);
}

// In order: the first tests run before the slow path has been taken on the connection.
describe("storeEvents' fast and slow paths", () => {
  it("stores a batch of new events straight into events, without the staging table, counting all of them", async () => {
    const batch = [event("a1", 1n, 0), event("a2", 1n, 1), event("a3", 1n, 2, { name: "signup" }), event("b1", 2n, 0)];
    expect(await storeEvents(pool, batch)).toBe(4);
    expect(await stored(1n)).toEqual(["a1", "a2", "a3"]);
    expect(await session(1n)).toEqual({ pageviews: 2, events: 3, entry_page: "/a1", exit_page: "/a2" });
    expect(await session(2n)).toEqual({ pageviews: 1, events: 1, entry_page: "/b1", exit_page: "/b1" });
    expect(await storeEventBatches(pool, [[event("c1", 3n, 0)], [event("c2", 3n, 1), event("c3", 3n, 2)]])).toEqual([1, 2]);
    expect(await session(3n)).toEqual({ pageviews: 3, events: 3, entry_page: "/c1", exit_page: "/c3" });
    expect(await staged()).toBe(false);
  });

  it("keeps a bad value's data error (and its SQLSTATE) from the direct COPY, storing nothing of the batch", async () => {
    await expect(storeEvents(pool, [event("bad-ok", 4n, 0), event("bad", 4n, 1, { title: "a\u0000b" })])).rejects.toMatchObject({ code: expect.stringMatching(/^22/) });
    expect(await stored(4n)).toEqual([]);
    expect(await session(4n)).toBeUndefined();
    // The connection takes the next batch, still on the fast path.
    expect(await storeEvents(pool, [event("bad-ok", 4n, 0)])).toBe(1);
    expect(await staged()).toBe(false);
  });

  it("stores nothing twice when a batch is stored again: none new, sessions unchanged", async () => {
    const batch = [event("a1", 1n, 0), event("a2", 1n, 1), event("a3", 1n, 2, { name: "signup" }), event("b1", 2n, 0)];
    expect(await storeEvents(pool, batch)).toBe(0);
    expect(await staged()).toBe(true);
    expect(await stored(1n)).toEqual(["a1", "a2", "a3"]);
    expect(await session(1n)).toEqual({ pageviews: 2, events: 3, entry_page: "/a1", exit_page: "/a2" });
    expect(await session(2n)).toEqual({ pageviews: 1, events: 1, entry_page: "/b1", exit_page: "/b1" });
  });

  it("stores only the new events of a batch mixing stored and new ones, and only those count towards their sessions", async () => {
    const batch = [event("a0", 1n, -1), event("a2", 1n, 1), event("a4", 1n, 3), event("b1", 2n, 0), event("b2", 2n, 1, { name: "signup" })];
    expect(await storeEvents(pool, batch)).toBe(3);
    expect(await stored(1n)).toEqual(["a0", "a1", "a2", "a3", "a4"]);
    expect(await session(1n)).toEqual({ pageviews: 4, events: 5, entry_page: "/a0", exit_page: "/a4" });
    expect(await session(2n)).toEqual({ pageviews: 1, events: 2, entry_page: "/b1", exit_page: "/b1" });
    // A group commit counts each batch's own new events.
    expect(await storeEventBatches(pool, [[event("c1", 3n, 0), event("c4", 3n, 3)], [event("c5", 3n, 4)]])).toEqual([1, 1]);
    expect(await session(3n)).toEqual({ pageviews: 5, events: 5, entry_page: "/c1", exit_page: "/c5" });
  });

  it("stores an event sent twice in one batch once, and counts it once towards its session", async () => {
    const twice = event("d1", 5n, 0);
    expect(await storeEvents(pool, [twice, event("d2", 5n, 1), { ...twice }])).toBe(2);
    expect(await stored(5n)).toEqual(["d1", "d2"]);
    expect(await session(5n)).toEqual({ pageviews: 2, events: 2, entry_page: "/d1", exit_page: "/d2" });
  });

  it("takes the slow path for a large batch whose first event is stored already, and the connection goes on", async () => {
    // A few MB: Postgres refuses the COPY while Node is still sending it.
    const title = "x".repeat(1000);
    const large = [event("d1", 5n, 0), ...Array.from({ length: 3000 }, (_, i) => event(`e${i}`, 6n, 0, { ts: T0 + i, title }))];
    expect(await storeEvents(pool, large)).toBe(3000);
    expect(await session(6n)).toEqual({ pageviews: 3000, events: 3000, entry_page: "/e0", exit_page: "/e2999" });
    expect(await session(5n)).toEqual({ pageviews: 2, events: 2, entry_page: "/d1", exit_page: "/d2" });
    // Same for a data error early in a large batch: refused with its SQLSTATE, nothing stored.
    const bad = [event("f0", 7n, 0, { title: "a\u0000b" }), ...Array.from({ length: 3000 }, (_, i) => event(`f${i + 1}`, 7n, 0, { ts: T0 + i + 1, title }))];
    await expect(storeEvents(pool, bad)).rejects.toMatchObject({ code: expect.stringMatching(/^22/) });
    expect(await stored(7n)).toEqual([]);
    expect(await storeEvents(pool, [event("g1", 8n, 0)])).toBe(1);
    expect(await session(8n)).toEqual({ pageviews: 1, events: 1, entry_page: "/g1", exit_page: "/g1" });
  });

  it("stores session rows whatever their text holds: quotes, backslashes, other scripts, and a lone surrogate as U+FFFD", async () => {
    const odd = `/q"uote\\back\\ud800slash/日本語/🙂`;
    const batch = [event("h1", 9n, 0, { pathname: odd, country: 'C"' }), event("h2", 9n, 1, { pathname: "/lone\ud800x" })];
    expect(await storeEvents(pool, batch)).toBe(2);
    expect(await session(9n)).toEqual({ pageviews: 2, events: 2, entry_page: odd, exit_page: "/lone\ufffdx" });
    const { rows } = await pool.query("select country from sessions where site_id = $1 and session_id = 9", [SITE]);
    expect(rows[0].country).toBe('C"');
  });
});

describe("a batch larger than one piece of COPY data", () => {
  it("stores every row, escapes and all, across the pieces it is encoded in", async () => {
    // 150 events: the data goes out in several pieces, the last one short.
    const batch = Array.from({ length: 150 }, (_, i) => event(`big-${i}`, 100n + BigInt(i % 7), i, { title: `T\t${i}\\\n€${"x".repeat(i)}` }));
    expect(await storeEvents(pool, batch)).toBe(150);
    const { rows } = await pool.query("select event_id, title from events where site_id = $1 and event_id like 'big-%'", [SITE]);
    expect(new Map(rows.map((r: { event_id: string; title: string }) => [r.event_id, r.title]))).toEqual(new Map(batch.map((e) => [e.eventId, e.title])));
    const sessions = await pool.query("select sum(events)::int as n, count(*)::int as c from sessions where site_id = $1 and session_id between 100 and 106", [SITE]);
    expect(sessions.rows[0]).toEqual({ n: 150, c: 7 });
  });
});
