// The `beacon` command, run as users run it (bin/beacon.js) against a test database: what it
// prints, the keys it makes (checked through the server's own key lookup), the audit entries it
// writes, and how it fails.
import { execFile } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { MikroORM } from "@mikro-orm/postgresql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeyPrincipals } from "../../server/core/management/principals.js";
import { closeOrm, createOrm, sqlPool } from "../../server/db/orm.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

const repo = fileURLToPath(new URL("../..", import.meta.url));

let database: TestDatabase;
let orm: MikroORM | undefined;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function beacon(...args: string[]): Promise<Result> {
  const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: database.url };
  delete env.LOG_LEVEL;
  return new Promise((resolve) => {
    execFile(process.execPath, [join(repo, "bin/beacon.js"), ...args], { cwd: repo, env }, (error, stdout, stderr) => {
      resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr });
    });
  });
}

async function query<T>(sql: string, values: unknown[] = []): Promise<T[]> {
  orm ??= await createOrm({ databaseUrl: database.url });
  return (await (await sqlPool(orm)).query(sql, values)).rows as T[];
}

beforeAll(async () => {
  database = await createTestDatabase("cli");
});

afterAll(async () => {
  if (orm) await closeOrm(orm);
  await database?.drop();
});

describe("beacon", () => {
  let siteId: string;

  it("migrate applies the migrations once", async () => {
    const first = await beacon("migrate");
    expect(first).toMatchObject({ code: 0, stderr: "" });
    expect(first.stdout).toMatch(/^applied Migration\d+_records, /);
    const again = await beacon("migrate");
    expect(again).toMatchObject({ code: 0, stdout: "the database is up to date\n" });
  });

  it("sites create prints the new site as JSON, and audits it as the CLI", async () => {
    const { code, stdout, stderr } = await beacon("sites", "create", "--domain", "Shop.Example.com", "--name", "Shop", "--timezone", "Europe/Berlin", "--currency", "EUR");
    expect(code, stderr).toBe(0);
    const site = JSON.parse(stdout) as Record<string, unknown>;
    expect(site).toMatchObject({ domain: "shop.example.com", name: "Shop", timezone: "Europe/Berlin", currency: "EUR" });
    expect(site.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(site.tracking_id).toMatch(/^BK-[A-Z0-9]{8}$/);
    siteId = site.id as string;
    // The first command on an empty database creates the organisation, as a first start would.
    expect(stderr).toMatch(/admin API key[^\n]*\n\s+bk_\S+\n$/);

    const audit = await query<{ actor: string; actor_key_id: string | null }>("select actor, actor_key_id from audit_log where action = 'site.create' and resource = $1", [`sites/${siteId}`]);
    expect(audit).toEqual([{ actor: "cli", actor_key_id: null }]);
  });

  it("keys create prints only a key, which authenticates with its role and sites", async () => {
    const viewer = await beacon("keys", "create", "--role", "viewer", "--name", "dashboard");
    expect(viewer).toMatchObject({ code: 0, stderr: "" });
    expect(viewer.stdout).toMatch(/^bk_[A-Za-z0-9_-]+\n$/);
    const limited = await beacon("keys", "create", "--role", "analyst", "--site", siteId);
    expect(limited.code, limited.stderr).toBe(0);

    orm ??= await createOrm({ databaseUrl: database.url });
    const principals = new ApiKeyPrincipals(orm);
    expect(await principals.resolve(viewer.stdout.trim())).toMatchObject({ role: "viewer", siteIds: [], actor: expect.stringContaining("dashboard") });
    expect(await principals.resolve(limited.stdout.trim())).toMatchObject({ role: "analyst", siteIds: [siteId] });
    expect(await principals.resolve("bk_not-a-key")).toBeUndefined();
    const audit = await query<{ actor: string }>("select actor from audit_log where action = 'api_key.create' and actor = 'cli'");
    expect(audit).toHaveLength(2);
  });

  it("refuses a bad domain with one line naming the field, and exit code 1", async () => {
    const { code, stdout, stderr } = await beacon("sites", "create", "--domain", "https://example.com/path");
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toMatch(/^beacon: domain: [^\n]+\n$/);
  });

  it("refuses a second site for the same domain", async () => {
    const { code, stderr } = await beacon("sites", "create", "--domain", "shop.example.com");
    expect(code).toBe(1);
    expect(stderr).toMatch(/^beacon: domain: .*shop\.example\.com\n$/);
  });

  it("reports a site id that is not one, naming the field", async () => {
    const { code, stderr } = await beacon("keys", "create", "--role", "viewer", "--site", "nope");
    expect(code).toBe(1);
    expect(stderr).toMatch(/^beacon: site_ids\[0\]: [^\n]+\n$/);
  });

  it("exits 2 on usage errors, and prints usage on --help", async () => {
    for (const args of [["keys", "create"], ["keys", "create", "--role", "owner"], ["sites", "create"], ["sites", "create", "--domain", "a.com", "--colour", "red"], ["frobnicate"]]) {
      const { code, stdout, stderr } = await beacon(...args);
      expect({ args, code, stdout }).toEqual({ args, code: 2, stdout: "" });
      expect(stderr).toMatch(/^beacon: [^\n]+\n$/);
    }
    const help = await beacon("--help");
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("keys create --role admin|analyst|viewer");
  });
});
