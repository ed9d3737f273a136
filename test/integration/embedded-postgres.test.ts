// The embedded Postgres: initialised once, data kept across restarts, shut down with a process
// that exits without stopping it, and a cluster left running by a killed process taken over at
// the next start. Slow (initdb, several starts).
import { spawn } from "node:child_process";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startEmbeddedPostgres, type EmbeddedPostgres } from "../../server/db/embedded.js";

let dataDir: string;
const logLines: string[] = [];
const log = (line: string) => void logLines.push(line);
let running: EmbeddedPostgres | undefined;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "beacon-embedded-"));
  // mkdtemp makes the directory private; as root, Postgres runs as the postgres user and must enter it.
  await chmod(dataDir, 0o755);
});

afterAll(async () => {
  await running?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

const EMBEDDED_MODULE = new URL("../../server/db/embedded.ts", import.meta.url).href;

/** Runs an ES module script in a fresh Node process until it exits. */
function runScript(script: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => void (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => void (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}

async function query(url: string, sql: string, values?: unknown[]): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(sql, values);
  } finally {
    await client.end();
  }
}

it("keeps its data across a stop and a start in the same directory", { timeout: 180_000 }, async () => {
  running = await startEmbeddedPostgres({ dataDir, log });
  expect(running.url).toMatch(/^postgres:\/\/postgres:[0-9a-f]+@127\.0\.0\.1:\d+\/beacon$/);
  expect(await readFile(join(dataDir, "postgres", "PG_VERSION"), "utf8")).toMatch(/^\d+/);
  await query(running.url, "create table notes (id int primary key, body text not null)");
  await query(running.url, "insert into notes values (1, 'ünïcode survives')");
  const { rows: encoding } = await query(running.url, "select pg_encoding_to_char(encoding) as encoding from pg_database where datname = 'beacon'");
  expect(encoding).toEqual([{ encoding: "UTF8" }]);
  await running.stop();
  await running.stop(); // idempotent

  // A pid file whose process is gone, as after a crash of the whole machine.
  await writeFile(join(dataDir, "postgres", "postmaster.pid"), "2147483000\n");
  logLines.length = 0;
  running = await startEmbeddedPostgres({ dataDir, log });
  expect(logLines.some((line) => line.includes("initialising"))).toBe(false);
  const { rows } = await query(running.url, "select body from notes where id = 1");
  expect(rows).toEqual([{ body: "ünïcode survives" }]);
  await running.stop();
  running = undefined;
});

it("lets a process that loaded it end on its own with exit code 0", async () => {
  // The package's own exit hook failed here ("done is not a function", exit code 1).
  const { code, stderr } = await runScript(
    `const { preloadEmbeddedPostgres } = await import(${JSON.stringify(EMBEDDED_MODULE)});
     await preloadEmbeddedPostgres();`,
  );
  expect(stderr).toBe("");
  expect(code).toBe(0);
});

it("shuts Postgres down when the process that started it exits without stop()", { timeout: 180_000 }, async () => {
  const { code, stdout, stderr } = await runScript(
    `const { startEmbeddedPostgres } = await import(${JSON.stringify(EMBEDDED_MODULE)});
     await startEmbeddedPostgres({ dataDir: ${JSON.stringify(dataDir)}, log: () => {} });
     process.exit(0);`,
  );
  expect(stderr).toBe("");
  expect(code).toBe(0);
  expect(stdout).toBe("");
  // postmaster.pid exists while Postgres runs and is removed by its shutdown.
  const pidFile = join(dataDir, "postgres", "postmaster.pid");
  const deadline = Date.now() + 30_000;
  while (await readFile(pidFile, "utf8").then(() => true, () => false)) {
    if (Date.now() > deadline) throw new Error("Postgres still running 30 s after its process exited");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
});

it("takes over a cluster whose process was killed while Postgres kept running", { timeout: 180_000 }, async () => {
  // A separate Beacon-like process starts the cluster and is then killed with SIGKILL, which
  // leaves its Postgres running as an orphan that holds the data directory.
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      "--input-type=module",
      "-e",
      `const { startEmbeddedPostgres } = await import(${JSON.stringify(EMBEDDED_MODULE)});
       const pg = await startEmbeddedPostgres({ dataDir: ${JSON.stringify(dataDir)}, log: () => {} });
       console.log("URL " + pg.url);
       setInterval(() => {}, 1000);`,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const orphanUrl = await new Promise<string>((resolve, reject) => {
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      const match = /URL (\S+)/.exec(output);
      if (match) resolve(match[1]);
    });
    child.once("exit", (code) => reject(new Error(`child exited with ${code} before starting Postgres`)));
  });
  const orphanPid = Number.parseInt((await readFile(join(dataDir, "postgres", "postmaster.pid"), "utf8")).split("\n")[0], 10);
  child.kill("SIGKILL");
  await new Promise((resolve) => child.once("exit", resolve));
  expect((await query(orphanUrl, "select 1 as alive")).rows).toEqual([{ alive: 1 }]);

  logLines.length = 0;
  running = await startEmbeddedPostgres({ dataDir, log });
  expect(logLines.some((line) => line.includes(`stopping Postgres (pid ${orphanPid})`))).toBe(true);
  expect(() => process.kill(orphanPid, 0)).toThrow();
  const { rows } = await query(running.url, "select body from notes where id = 1");
  expect(rows).toEqual([{ body: "ünïcode survives" }]);
});
