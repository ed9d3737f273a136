// The instance's hashing secret: BEACON_SECRET when set, else one generated on first start and
// kept in Postgres so every process (and every restart) hashes visitors the same way.
import { randomBytes } from "node:crypto";
import type { MikroORM } from "@mikro-orm/postgresql";
import { sqlPool } from "./orm.js";

export async function instanceSecret(orm: MikroORM, configured: string | undefined): Promise<string> {
  if (configured) return configured;
  const pool = await sqlPool(orm);
  await pool.query("insert into instance_secrets (name, value) values ('visitor_hash', $1) on conflict (name) do nothing", [randomBytes(32).toString("hex")]);
  const { rows } = await pool.query<{ value: string }>("select value from instance_secrets where name = 'visitor_hash'");
  return rows[0].value;
}
