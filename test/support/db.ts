// Throwaway databases for integration tests: each test file gets its own, named so a leftover
// one is recognisable (`beacon_t_<label>_<random>`), and drops it when done.
import { randomBytes } from "node:crypto";
import type { MikroORM } from "@mikro-orm/postgresql";
import { createDatabaseIfMissing, databaseUrl, dropDatabase } from "../../server/db/databases.js";
import { closeOrm, createOrm, migrate } from "../../server/db/orm.js";

/** The server test databases are created on; any database there the user may connect to. */
export const TEST_DATABASE_ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL || "postgres://postgres@127.0.0.1:5432/postgres";

export interface TestDatabase {
  url: string;
  /** Ends open connections and drops the database. */
  drop(): Promise<void>;
}

export async function createTestDatabase(label: string): Promise<TestDatabase> {
  const safeLabel = label.toLowerCase().replace(/[^a-z0-9]+/g, "_").slice(0, 30);
  const name = `beacon_t_${safeLabel}_${randomBytes(4).toString("hex")}`;
  await createDatabaseIfMissing(TEST_DATABASE_ADMIN_URL, name);
  return {
    url: databaseUrl(TEST_DATABASE_ADMIN_URL, name),
    drop: () => dropDatabase(TEST_DATABASE_ADMIN_URL, name),
  };
}

export interface MigratedTestOrm extends TestDatabase {
  orm: MikroORM;
}

/** A fresh database with every migration applied, and an ORM on it. `drop()` closes the ORM first. */
export async function createMigratedTestOrm(label: string): Promise<MigratedTestOrm> {
  const database = await createTestDatabase(label);
  let orm: MikroORM | undefined;
  try {
    orm = await createOrm({ databaseUrl: database.url });
    await migrate(orm);
  } catch (error) {
    if (orm) await closeOrm(orm);
    await database.drop();
    throw error;
  }
  const migratedOrm = orm;
  return {
    orm: migratedOrm,
    url: database.url,
    async drop() {
      await closeOrm(migratedOrm);
      await database.drop();
    },
  };
}
