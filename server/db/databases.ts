// Creating and dropping whole databases, for the embedded server, tests and migration
// generation. Names are checked against a strict pattern because they cannot be parameters.
import pg from "pg";

const DATABASE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

function assertDatabaseName(name: string): void {
  if (!DATABASE_NAME.test(name)) throw new Error(`invalid database name "${name}"`);
}

/** `url` with its path replaced by `/<name>`. */
export function databaseUrl(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}

/** Creates database `name` on the server `adminUrl` points at, unless it exists. Returns whether it created it. */
export async function createDatabaseIfMissing(adminUrl: string, name: string): Promise<boolean> {
  assertDatabaseName(name);
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const { rowCount } = await admin.query("select 1 from pg_database where datname = $1", [name]);
    if (rowCount) return false;
    try {
      await admin.query(`create database "${name}"`);
    } catch (error) {
      // Another process created it between the check and the create.
      if ((error as { code?: string }).code === "42P04") return false;
      throw error;
    }
    return true;
  } finally {
    await admin.end();
  }
}

/** Drops database `name`, ending its open connections first. */
export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  assertDatabaseName(name);
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`drop database if exists "${name}" with (force)`);
  } finally {
    await admin.end();
  }
}
