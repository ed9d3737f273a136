// storeEvents writes through COPY into a staging table: every character a string can carry must
// arrive as sent (COPY's text format gives tab, newline, carriage return and backslash meanings),
// nulls must stay null, duplicates must be counted once, and a batch that cannot be stored must
// leave nothing behind. Real Postgres, this file's own database.
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type StoredEvent, storeEvents } from "../../server/db/events-store.js";
import { sqlPool } from "../../server/db/orm.js";
import { createMigratedTestOrm, type MigratedTestOrm } from "../support/db.js";
import { storedEvent } from "../support/stored-event.js";

const SITE = "5b7c2d1e-0f3a-4e5b-8c6d-7e8f9a0b1c2d";
let db: MigratedTestOrm;
let pool: pg.Pool;

beforeAll(async () => {
  db = await createMigratedTestOrm("events-store");
  pool = await sqlPool(db.orm);
});
afterAll(() => db?.drop());

function event(eventId: string, over: Partial<StoredEvent> = {}): StoredEvent {
  const ts = Date.parse("2026-11-20T10:00:00.123Z");
  return storedEvent({ siteId: SITE, eventId, ts, sessionStartedAt: ts, receivedAt: ts, visitorId: 4_611_686_018_427_387_905n, sessionId: 17n, ...over });
}

describe("storeEvents", () => {
  it("stores every character as sent: tabs, newlines, backslashes, quotes and \\N in text and properties", async () => {
    const awkward = "tab\there\nnew line\r\\back\\slash \\N \"quoted\" 'single' ünïcødé 😀 end\\";
    const stored = await storeEvents(pool, [
      event("awkward", { pathname: `/p/${awkward}`, title: awkward, utmCampaign: "\\N", props: { note: awkward, "key\twith\ttabs": "\\", n: 3, yes: true }, revenue: 12.5 }),
      event("plain", { ts: Date.parse("2026-11-20T10:00:01Z") }),
    ]);
    expect(stored).toBe(2);
    const { rows } = await pool.query(
      "select event_id, pathname, title, utm_campaign, props, revenue::text as revenue, visitor_id::text as visitor_id, ts from events where site_id = $1 order by ts",
      [SITE],
    );
    expect(rows[0]).toMatchObject({
      event_id: "awkward",
      pathname: `/p/${awkward}`,
      title: awkward,
      utm_campaign: "\\N",
      props: { note: awkward, "key\twith\ttabs": "\\", n: 3, yes: true },
      revenue: "12.5",
      visitor_id: "4611686018427387905",
    });
    expect(new Date(rows[0].ts as string).toISOString()).toBe("2026-11-20T10:00:00.123Z");
    expect(rows[1]).toMatchObject({ event_id: "plain", revenue: null });
  });

  it("stores each field in its own column", async () => {
    const ts = Date.parse("2026-11-20T09:00:00.001Z");
    const texts = {
      hostname: "h.example", pathname: "/pathname", title: "title", referrer: "https://ref.example/", referrerSource: "referrerSource",
      referrerMedium: "referrerMedium", utmSource: "utmSource", utmMedium: "utmMedium", utmCampaign: "utmCampaign", utmTerm: "utmTerm",
      utmContent: "utmContent", clickId: "clickId", country: "FR", region: "region", city: "city", browser: "browser",
      browserVersion: "browserVersion", os: "os", osVersion: "osVersion", deviceType: "deviceType", screen: "screen", language: "language",
    };
    await storeEvents(pool, [event("columns", { ...texts, name: "signup", ts, receivedAt: ts + 2_500, sessionStartedAt: ts, visitorId: 7n, sessionId: 8n, classification: 2, props: { k: "v" }, revenue: 3.25 })]);
    const { rows } = await pool.query(
      `select to_jsonb(e) - 'ts' - 'received_at' as row, (extract(epoch from ts) * 1000)::int8::text as ts, (extract(epoch from received_at) * 1000)::int8::text as received_at
       from events e where site_id = $1 and event_id = 'columns'`,
      [SITE],
    );
    const snake = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    expect(rows[0].row).toEqual({
      site_id: SITE, event_id: "columns", name: "signup", visitor_id: 7, session_id: 8, classification: 2, props: { k: "v" }, revenue: 3.25,
      ...Object.fromEntries(Object.entries(texts).map(([key, value]) => [snake(key), value])),
    });
    expect([rows[0].ts, rows[0].received_at]).toEqual([String(ts), String(ts + 2_500)]);
  });

  it("counts a batch's duplicates and earlier copies once, and adds them to their sessions once", async () => {
    const a = event("dup-a", { sessionId: 99n, ts: Date.parse("2026-11-20T11:00:00Z"), sessionStartedAt: Date.parse("2026-11-20T11:00:00Z") });
    const b = event("dup-b", { sessionId: 99n, ts: Date.parse("2026-11-20T11:01:00Z"), sessionStartedAt: Date.parse("2026-11-20T11:00:00Z"), pathname: "/b" });
    expect(await storeEvents(pool, [a, a, b])).toBe(2);
    // A retried batch: nothing new.
    expect(await storeEvents(pool, [b, a])).toBe(0);
    const { rows } = await pool.query("select pageviews, events, entry_page, exit_page from sessions where site_id = $1 and session_id = 99", [SITE]);
    expect(rows).toEqual([{ pageviews: 2, events: 2, entry_page: "/", exit_page: "/b" }]);
  });

  it("leaves nothing of a batch Postgres refuses, and takes the next batch on the same connections", async () => {
    const before = Number((await pool.query("select count(*) as n from events where site_id = $1", [SITE])).rows[0].n);
    // A NUL cannot be stored in text: the whole batch fails with a data error.
    await expect(storeEvents(pool, [event("ok-1", { ts: Date.parse("2026-11-20T12:00:00Z") }), event("bad", { title: "a\u0000b" })])).rejects.toMatchObject({ code: expect.stringMatching(/^22/) });
    expect(Number((await pool.query("select count(*) as n from events where site_id = $1", [SITE])).rows[0].n)).toBe(before);
    // The staging table of the failed batch's connection is empty again: the next batch stores exactly its own.
    const next = Array.from({ length: 12 }, (_, i) => event(`next-${i}`, { ts: Date.parse("2026-11-20T12:00:00Z") + i }));
    expect(await storeEvents(pool, next)).toBe(12);
    expect(Number((await pool.query("select count(*) as n from events where site_id = $1", [SITE])).rows[0].n)).toBe(before + 12);
  });
});
