// Rollup rows a report has read are kept by query and rollup version: asking again reads no
// rollup rows from Postgres, and once the rollup job has changed them (here: late events into
// rolled hours, then the re-roll), the answer follows, equal to the raw computation each time.
// Then: multi-day blocks missing from older rollups are built by the next roll.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Pool } from "pg";
import { ReportEngine } from "../../server/core/reports/engine.js";
import { planReport } from "../../server/core/reports/query.js";
import { storeEvents } from "../../server/db/events-store.js";
import { sqlPool } from "../../server/db/orm.js";
import { rollSite } from "../../server/db/rollups.js";
import { createMigratedTestOrm, type MigratedTestOrm } from "../support/db.js";
import { type Fixture, generateFixture } from "../support/report-fixture.js";

const WINDOW = { start: Date.parse("2026-05-01T00:00:00Z"), end: Date.parse("2026-05-13T00:00:00Z") };
const ROLLED_AT = WINDOW.end + 3 * 3_600_000;
let database: MigratedTestOrm;
let pool: Pool;
let fixture: Fixture;
/** SQL statements that read rollup rows, since the last reset. */
let rollupReads: string[] = [];

beforeAll(async () => {
  database = await createMigratedTestOrm("report-cache");
  pool = await sqlPool(database.orm);
  fixture = generateFixture(77, [{ timezone: "Europe/Berlin", goals: [] }], { window: WINDOW, sessionsPerSite: 300, visitorsPerSite: 150 });
  for (let i = 0; i < fixture.events.length; i += 500) await storeEvents(pool, fixture.events.slice(i, i + 500));
  await rollSite(pool, fixture.sites[0].id, "Europe/Berlin", ROLLED_AT);
}, 300_000);
afterAll(() => database?.drop());

// A pool that notes every statement reading rollups_* rows, then runs it.
const counting = (): Pool =>
  new Proxy(pool, {
    get(target, name, receiver) {
      if (name !== "query") return Reflect.get(target, name, receiver);
      return (text: unknown, values?: unknown) => {
        if (typeof text === "string" && /from rollups_(daily|hourly|blocks)\b/.test(text)) rollupReads.push(text);
        return target.query(text as string, values as unknown[]);
      };
    },
  });

// One engine per mode for the whole file, as the server keeps one: the rows it keeps are its own.
const engines = {
  rollups: new ReportEngine(async () => counting(), { rollups: true }),
  raw: new ReportEngine(async () => counting(), { rollups: false }),
};

async function run(rollups: boolean) {
  const site = fixture.sites[0];
  const q = planReport({ id: site.id, timezone: site.timezone }, [], {
    startDate: "2026-05-02", endDate: "2026-05-11", metrics: ["pageviews", "visitors", "visits", "bounce_rate"], dimensions: ["page"],
    filters: [], orderBy: [], limit: 100, pageToken: "", classification: "",
  });
  return (rollups ? engines.rollups : engines.raw).run(q);
}

describe("rollup rows a report read", () => {
  it("are not read again for the same question and rollups, and the answer stays the raw one", async () => {
    const raw = await run(false);
    rollupReads = [];
    const first = await run(true);
    expect(first.sources.rollupBlocks).toBeGreaterThan(0);
    expect(rollupReads.length).toBeGreaterThan(0);
    rollupReads = [];
    const second = await run(true);
    expect(rollupReads).toEqual([]);
    expect(second.rows).toEqual(first.rows);
    expect(first.rows).toEqual(raw.rows);
  });

  it("are read anew once late events dirtied hours and the job re-rolled them", async () => {
    const before = await run(true);
    await storeEvents(pool, fixture.late.filter((e) => e.ts >= Date.parse("2026-05-02T00:00:00Z") && e.ts < Date.parse("2026-05-11T00:00:00Z")));
    const dirty = await run(true);
    expect(dirty.rows).toEqual((await run(false)).rows);
    await rollSite(pool, fixture.sites[0].id, "Europe/Berlin", ROLLED_AT);
    rollupReads = [];
    const rerolled = await run(true);
    expect(rollupReads.length).toBeGreaterThan(0);
    expect(rerolled.rows).toEqual((await run(false)).rows);
    expect(rerolled.rows).not.toEqual(before.rows);
  }, 300_000);
});

describe("multi-day blocks missing from older rollups", () => {
  it("are built by the next roll, and reports read them with the raw answer", async () => {
    const site = fixture.sites[0];
    // As rollups made before blocks existed: daily rows, no blocks.
    await pool.query("delete from rollups_blocks where site_id = $1", [site.id]);
    await pool.query("delete from rollup_blocks_built where site_id = $1", [site.id]);
    const without = await run(true);
    expect(without.sources.rollupBlocks).toBe(0);
    const rolled = await rollSite(pool, site.id, "Europe/Berlin", ROLLED_AT);
    expect(rolled.hours).toBe(0);
    expect(rolled.blocks).toBeGreaterThan(0);
    const withBlocks = await run(true);
    expect(withBlocks.sources.rollupBlocks).toBeGreaterThan(0);
    expect(withBlocks.rows).toEqual((await run(false)).rows);
  });
});
