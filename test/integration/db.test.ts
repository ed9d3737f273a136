// The database layer against a real Postgres: migrations, entities and the partitioned events store.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKey, Goal, Organisation, Site } from "../../server/db/entities/index.js";
import { closeOrm, createOrm, migrate, sqlPool } from "../../server/db/orm.js";
import { migrations } from "../../server/db/migrations/index.js";
import {
  dropPartitionsBefore,
  ensurePartitions,
  isMissingPartitionError,
  partitionName,
  type SqlClient,
} from "../../server/db/partitions.js";
import { createMigratedTestOrm, createTestDatabase, type MigratedTestOrm } from "../support/db.js";

const day = (iso: string) => new Date(`${iso}T00:00:00Z`);

async function partitionsOf(db: SqlClient, table: string): Promise<string[]> {
  const { rows } = await db.query(
    "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = to_regclass($1) order by 1",
    [table],
  );
  return rows.map((row: { relname: string }) => row.relname);
}

describe("migrations", () => {
  it("apply to a fresh database once, even when two processes start together", async () => {
    const database = await createTestDatabase("migrate");
    const [first, second] = await Promise.all([createOrm({ databaseUrl: database.url }), createOrm({ databaseUrl: database.url })]);
    try {
      const applied = await Promise.all([migrate(first), migrate(second)]);
      expect(applied.flat().sort()).toEqual(migrations.map((m) => m.name).sort());
      expect(await migrate(first)).toEqual([]);

      const pool = await sqlPool(first);
      const { rows } = await pool.query("select relname, relkind from pg_class where relname in ('events', 'sessions') order by 1");
      expect(rows).toEqual([
        { relname: "events", relkind: "p" },
        { relname: "sessions", relkind: "p" },
      ]);
    } finally {
      await Promise.all([closeOrm(first), closeOrm(second)]);
      await database.drop();
    }
  });

  it("leave no difference between the entities and the schema", async () => {
    const { orm, drop } = await createMigratedTestOrm("schema_diff");
    try {
      // With partitions present too: the raw-SQL tables must not show up as tables to drop.
      await ensurePartitions(await sqlPool(orm), "events", day("2026-01-01"), day("2026-01-02"));
      expect(await orm.schema.getUpdateSchemaSQL({ wrap: false })).toBe("");
      expect(await orm.migrator.checkSchema()).toBe(false);
    } finally {
      await drop();
    }
  });
});

describe("entities", () => {
  let db: MigratedTestOrm;
  beforeAll(async () => {
    db = await createMigratedTestOrm("entities");
  });
  afterAll(() => db?.drop());

  it("round-trip an organisation, a site, an API key and a goal", async () => {
    const em = db.orm.em.fork();
    const org = em.create(Organisation, { name: "Acme" });
    const site = em.create(Site, {
      organisationId: org.id,
      domain: "acme.example",
      name: "Acme",
      timezone: "Europe/Berlin",
      currency: "EUR",
      industry: "retail",
      settings: { respectDoNotTrack: true, sessionTimeoutMinutes: 30 },
    });
    const key = em.create(ApiKey, {
      organisationId: org.id,
      name: "CI",
      prefix: "bk_live_",
      hash: "a".repeat(64),
      role: "analyst",
      siteIds: [site.id],
    });
    const goal = em.create(Goal, {
      siteId: site.id,
      organisationId: org.id,
      name: "Signed up",
      type: "event",
      matchType: "equals",
      value: "signup",
      valueNumeric: 12.5,
    });
    await em.flush();

    const read = db.orm.em.fork();
    const siteBack = await read.findOneOrFail(Site, site.id);
    expect(siteBack.trackingId).toMatch(/^BK-[A-HJKMNP-Z2-9]{8}$/);
    expect(siteBack).toMatchObject({ organisationId: org.id, domain: "acme.example", version: 1, deletedAt: null });
    expect(siteBack.settings).toEqual({ respectDoNotTrack: true, sessionTimeoutMinutes: 30 });
    expect(siteBack.createdAt).toBeInstanceOf(Date);
    const keyBack = await read.findOneOrFail(ApiKey, { hash: "a".repeat(64) });
    expect(keyBack).toMatchObject({ id: key.id, role: "analyst", siteIds: [site.id], revokedAt: null });
    const goalBack = await read.findOneOrFail(Goal, { siteId: site.id, id: goal.id });
    expect(goalBack).toMatchObject({ type: "event", matchType: "equals", value: "signup", valueNumeric: 12.5, propertyKey: null });

    siteBack.name = "Acme Shop";
    await read.flush();
    expect(siteBack.version).toBe(2);
  });

  it("keep domains unique per organisation among sites that are not deleted", async () => {
    const em = db.orm.em.fork();
    const org = em.create(Organisation, { name: "Duplicates" });
    const site = { organisationId: org.id, domain: "dup.example", name: "Dup", timezone: "UTC", currency: "USD", industry: "" };
    const first = em.create(Site, site);
    await em.flush();

    em.create(Site, site);
    await expect(em.flush()).rejects.toThrow(/sites_organisation_id_domain_unique/);

    const retry = db.orm.em.fork();
    const deleted = await retry.findOneOrFail(Site, first.id);
    deleted.deletedAt = new Date();
    // Flushed on its own: a unit of work inserts before it updates, so a create in the same
    // flush would still see the old site.
    await retry.flush();
    retry.create(Site, site);
    await retry.flush();
  });
});

describe("events partitions", () => {
  let db: MigratedTestOrm;
  let pool: pg.Pool;
  beforeAll(async () => {
    db = await createMigratedTestOrm("partitions");
    pool = await sqlPool(db.orm);
  });
  afterAll(() => db?.drop());

  const siteId = "0e0f3c35-8a5d-4f5e-9f37-1c3c2d9f5a01";
  const insertEvent = (ts: string, eventId: string, onConflict = "") =>
    pool.query(
      `insert into events (site_id, ts, event_id, name, visitor_id, session_id, pathname, classification)
       values ($1, $2, $3, 'pageview', 42, 7, '/pricing', 1) ${onConflict}`,
      [siteId, ts, eventId],
    );

  it("creates one partition per day, once, even when two clients race", async () => {
    const other = new pg.Pool({ connectionString: db.url });
    try {
      const [created, raced] = await Promise.all([
        ensurePartitions(pool, "events", day("2026-03-01"), day("2026-03-03")),
        ensurePartitions(other, "events", day("2026-03-01"), day("2026-03-03")),
      ]);
      expect(new Set([...created, ...raced])).toEqual(new Set(["events_p20260301", "events_p20260302", "events_p20260303"]));
      expect(await ensurePartitions(pool, "events", day("2026-03-01"), day("2026-03-03"))).toEqual([]);
      expect(await partitionsOf(pool, "events")).toEqual(["events_p20260301", "events_p20260302", "events_p20260303"]);
      // Days are UTC days, the upper bound exclusive.
      await insertEvent("2026-03-01T23:59:59.999Z", "last-of-march-1");
      await insertEvent("2026-03-02T00:00:00Z", "first-of-march-2");
      const { rows } = await pool.query("select event_id, tableoid::regclass::text as partition from events order by ts");
      expect(rows).toEqual([
        { event_id: "last-of-march-1", partition: "events_p20260301" },
        { event_id: "first-of-march-2", partition: "events_p20260302" },
      ]);
    } finally {
      await other.end();
    }
  });

  it("stores an event once: a retry with the same (site_id, ts, event_id) is ignored", async () => {
    await ensurePartitions(pool, "events", day("2026-03-10"), day("2026-03-10"));
    expect((await insertEvent("2026-03-10T12:00:00.123Z", "e1")).rowCount).toBe(1);
    expect((await insertEvent("2026-03-10T12:00:00.123Z", "e1", "on conflict do nothing")).rowCount).toBe(0);
    await expect(insertEvent("2026-03-10T12:00:00.123Z", "e1")).rejects.toMatchObject({ code: "23505" });

    const { rows } = await pool.query("select tableoid::regclass::text as partition, hostname, revenue, props from events where event_id = 'e1'");
    expect(rows).toEqual([{ partition: "events_p20260310", hostname: "", revenue: null, props: {} }]);
  });

  it("refuses an event for a day without a partition, recognisably", async () => {
    const error = await insertEvent("2030-01-01T00:00:00Z", "future").catch((e: unknown) => e);
    expect(isMissingPartitionError(error)).toBe(true);
  });

  it("drops only the partitions before the cut-off day", async () => {
    await ensurePartitions(pool, "sessions", day("2026-04-01"), day("2026-04-05"));
    expect(await dropPartitionsBefore(pool, "sessions", new Date("2026-04-03T15:00:00Z"))).toEqual([
      "sessions_p20260401",
      "sessions_p20260402",
    ]);
    expect(await partitionsOf(pool, "sessions")).toEqual(["sessions_p20260403", "sessions_p20260404", "sessions_p20260405"]);
    // The cache forgot the dropped days, so they can be created again.
    expect(await ensurePartitions(pool, "sessions", day("2026-04-02"), day("2026-04-02"))).toEqual(["sessions_p20260402"]);
  });

  it("leaves half of each session page free, so a visit's updates stay on their page (HOT)", async () => {
    await ensurePartitions(pool, "sessions", day("2026-05-01"), day("2026-05-01"));
    await ensurePartitions(pool, "events", day("2026-05-01"), day("2026-05-01"));
    const options = async (name: string) => (await pool.query("select reloptions from pg_class where relname = $1", [name])).rows[0].reloptions;
    expect(await options("sessions_p20260501")).toEqual(["fillfactor=50"]);
    expect(await options("events_p20260501")).toBeNull();
    await pool.query(
      `insert into sessions (site_id, session_id, visitor_id, started_at, ended_at, classification)
       select $1, n, n, '2026-05-01T10:00:00Z', '2026-05-01T10:00:00Z', 1 from generate_series(1, 400) n`,
      [siteId],
    );
    // Each session's next event: counted within the transaction, so no wait for the statistics.
    const client = await pool.connect();
    try {
      await client.query("begin");
      await client.query("update sessions set ended_at = ended_at + interval '1 minute', pageviews = pageviews + 1 where site_id = $1", [siteId]);
      const { rows } = await client.query("select pg_stat_get_xact_tuples_updated('sessions_p20260501'::regclass)::int as updated, pg_stat_get_xact_tuples_hot_updated('sessions_p20260501'::regclass)::int as hot");
      await client.query("commit");
      expect(rows[0].updated).toBe(400);
      expect(rows[0].hot).toBeGreaterThanOrEqual(390);
    } finally {
      client.release();
    }
  });

  it("gives the session partitions that existed before the setting the same room (migration)", async () => {
    const database = await createTestDatabase("fillfactor");
    const orm = await createOrm({ databaseUrl: database.url });
    try {
      const before = migrations.findIndex((m) => m.name === "Migration20261128000000_sessions_fillfactor") - 1;
      await orm.migrator.up({ to: migrations[before].name });
      const db = await sqlPool(orm);
      await db.query(`create table sessions_p20260601 partition of sessions for values from ('2026-06-01T00:00:00Z') to ('2026-06-02T00:00:00Z')`);
      expect(await migrate(orm)).toEqual(["Migration20261128000000_sessions_fillfactor"]);
      const { rows } = await db.query("select reloptions from pg_class where relname = 'sessions_p20260601'");
      expect(rows[0].reloptions).toEqual(["fillfactor=50"]);
    } finally {
      await closeOrm(orm);
      await database.drop();
    }
  });

  it("names partitions by UTC day", () => {
    expect(partitionName("events", new Date("2026-12-31T23:59:59.999Z"))).toBe("events_p20261231");
    expect(() => partitionName("goals" as never, new Date())).toThrow(/not a partitioned table/);
  });
});
