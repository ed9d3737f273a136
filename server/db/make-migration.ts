// Writes a migration for the difference between the entities and the committed migrations:
//
//   node --import tsx server/db/make-migration.ts <name> [--admin-url postgres://…/postgres]
//
// It applies the committed migrations to a scratch database, diffs the entities against it,
// writes `migrations/Migration<timestamp>_<name>.ts` and drops the scratch database. Review the
// file, then add it to `migrations/index.ts`. Raw-SQL tables (events, sessions) are never
// diffed: write their changes by hand as a migration with `this.addSql(...)`.
import { randomBytes } from "node:crypto";
import { MikroORM } from "@mikro-orm/postgresql";
import { createDatabaseIfMissing, databaseUrl, dropDatabase } from "./databases.js";
import { closeOrm, createOrm, migrate, MIGRATIONS_DIR, ormConfig } from "./orm.js";

async function makeMigration(name: string, adminUrl: string): Promise<string | undefined> {
  const scratch = `beacon_make_migration_${randomBytes(4).toString("hex")}`;
  await createDatabaseIfMissing(adminUrl, scratch);
  try {
    const url = databaseUrl(adminUrl, scratch);
    const migrated = await createOrm({ databaseUrl: url });
    try {
      await migrate(migrated);
    } finally {
      await closeOrm(migrated);
    }
    const orm = await MikroORM.init(ormConfig({ databaseUrl: url }, true));
    try {
      const result = await orm.migrator.create(MIGRATIONS_DIR, false, false, name);
      return result.fileName || undefined;
    } finally {
      await closeOrm(orm);
    }
  } finally {
    await dropDatabase(adminUrl, scratch);
  }
}

const args = process.argv.slice(2);
const adminFlag = args.indexOf("--admin-url");
const adminUrl = adminFlag >= 0 ? args[adminFlag + 1] : (process.env.DATABASE_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres");
const name = args.find((arg, i) => !arg.startsWith("--") && (adminFlag < 0 || i !== adminFlag + 1));
if (!name || !/^[a-z][a-z0-9_]*$/.test(name)) {
  console.error("usage: make-migration.ts <snake_case_name> [--admin-url postgres://user@host/postgres]");
  process.exit(2);
}
const fileName = await makeMigration(name, adminUrl);
console.log(fileName ? `wrote server/db/migrations/${fileName}; review it and add it to migrations/index.ts` : "no schema changes");
