// The one place the ORM is configured. Records (organisations, sites, goals, keys…) go through
// MikroORM; events and sessions are raw SQL over the same pg pool (see `sqlPool`).
import { Migrator } from "@mikro-orm/migrations";
import { defineConfig, MikroORM, type Options } from "@mikro-orm/postgresql";
import type { Pool } from "pg";
import { fileURLToPath } from "node:url";
import { entities } from "./entities/index.js";
import { migrations } from "./migrations/index.js";
import { PARTITIONED_TABLES } from "./partitions.js";

export interface OrmOptions {
  /** postgres:// URL of the database; it must exist (the embedded server and tests create theirs). */
  databaseUrl: string;
  /** Log every SQL statement MikroORM runs. */
  debug?: boolean;
}

/** Where committed migrations live; `make-migration.ts` writes new ones here. */
export const MIGRATIONS_DIR = fileURLToPath(new URL("./migrations/", import.meta.url));

// Raw-SQL tables the ORM must neither diff nor drop: the partitioned parents and their daily
// partitions (`events_p20260101`).
const RAW_SQL_TABLES = [...PARTITIONED_TABLES.map((table) => new RegExp(`^${table}(_p\\d{8})?$`)), /^instance_secrets$/, /^rollups_(hourly|daily|blocks)$/, /^rollup_(dirty|watermarks|blocks_built)$/, /^metric_(series|rollups|rollup_pending|bulk_ingests)$/];

// Any constant works as long as every Beacon process uses the same one.
const MIGRATION_LOCK_KEY = 0x6265_6163; // "beac"

/**
 * The ORM configuration. `forGeneration` swaps the committed migration list for file discovery,
 * which the migrator needs to know where to write a new migration.
 */
export function ormConfig({ databaseUrl, debug = false }: OrmOptions, forGeneration = false): Options {
  return defineConfig({
    clientUrl: databaseUrl,
    entities,
    extensions: [Migrator],
    debug,
    // The database is created by whoever provides it; the ORM never creates databases or tables.
    ensureDatabase: false,
    schemaGenerator: { skipTables: RAW_SQL_TABLES },
    migrations: {
      path: MIGRATIONS_DIR,
      pathTs: MIGRATIONS_DIR,
      glob: "Migration*.ts",
      // Statically imported, so running migrations needs no glob or TypeScript loader, and a
      // bundle works too.
      migrationsList: forGeneration ? undefined : migrations,
      // The snapshot would be written into the source tree on every migrate, named after the
      // database (a new file per test database). Diffs are taken against a migrated database instead.
      snapshot: false,
      // `migrate()` reports what it applied; the caller logs it with its own logger.
      silent: true,
      emit: "ts",
    },
  });
}

export async function createOrm(options: OrmOptions): Promise<MikroORM> {
  return MikroORM.init(ormConfig(options));
}

/**
 * Applies pending committed migrations and returns their names (empty when up to date).
 * Several processes may start at once: a session advisory lock makes them take turns, and the
 * later ones find nothing pending. The lock is released when the session ends, even on a crash.
 */
export async function migrate(orm: MikroORM): Promise<string[]> {
  const lockSession = await (await sqlPool(orm)).connect();
  try {
    await lockSession.query("select pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
    try {
      const applied = await orm.migrator.up();
      return applied.map((migration) => migration.name);
    } finally {
      await lockSession.query("select pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]);
    }
  } finally {
    lockSession.release();
  }
}

/**
 * The pg pool behind the ORM, for raw SQL (events, sessions, reports): one pool per process.
 * Note that MikroORM's type parsers are installed on it: timestamptz, timestamp, date and
 * interval columns come back as strings, not Dates.
 */
export async function sqlPool(orm: MikroORM): Promise<Pool> {
  return orm.em.getConnection().getNativeClient();
}

export async function closeOrm(orm: MikroORM): Promise<void> {
  await orm.close(true);
}
