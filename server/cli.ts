// The `beacon` command: administration straight on Beacon's database, for the operator at the
// console (the first site, a key for a dashboard, migrations before a deploy). It goes through
// the same core operations as ManagementService, so its input is validated and audited alike;
// its audit entries name the actor `cli`.
//
// The database is the one the server uses: DATABASE_URL, or else the embedded Postgres under
// BEACON_DATA_DIR. A running server owns the embedded cluster (on a port chosen at its start) and
// advertises it in `<dataDir>/postgres.json`; the CLI joins it, and starts the cluster itself for
// the duration of the command only when no server runs.
//
// bin/beacon.js is the entry point (`npx beacon`, `npm run beacon -- …`); it calls runCli.
import { parseArgs, type ParseArgsConfig } from "node:util";
import type { MikroORM } from "@mikro-orm/postgresql";
import { type BeaconConfig, ConfigError, loadConfig } from "./config.js";
import type { Principal, RoleName } from "./core/roles.js";
import { createLogger, type Logger } from "./logger.js";

// The ORM, the core and the generated code take a second or two to load, so they are imported
// only once the command line has been checked: `--help` and usage errors answer at once.

export interface CliIo {
  /** The command's result: a key, a site's JSON. Scripts read it, so nothing else goes here. */
  out(line: string): void;
  /** Errors and notices, one line each. */
  err(line: string): void;
  env: Record<string, string | undefined>;
}

const processIo: CliIo = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  env: process.env,
};

const USAGE = `Usage: beacon <command> [options]

Commands:
  sites create --domain D [--name N] [--timezone TZ] [--currency C] [--industry I]
      Creates a site and prints it as JSON (id, tracking_id, domain, name, timezone, ...).
  keys create --role admin|analyst|viewer [--site ID]... [--name N]
      Creates an API key and prints only the key. --site (repeatable) limits it to those sites.
  migrate
      Applies pending database migrations (the server also applies them at start).

The commands work on the server's database: DATABASE_URL when set, else the embedded Postgres
under BEACON_DATA_DIR (default ./.beacon), shared with a running \`npm start\` in that directory.
Exit codes: 0 done, 1 failed, 2 usage error.`;

const ROLES: readonly RoleName[] = ["admin", "analyst", "viewer"];

/** Wrong command line: exit code 2. */
class UsageError extends Error {
  override name = "UsageError";
}

type Options = NonNullable<ParseArgsConfig["options"]>;
type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

interface Command<Args> {
  options: Options;
  /** Checks the command line before anything is opened; throws UsageError. */
  parse(values: Values): Args;
  run(db: CliDatabase, args: Args, io: CliIo): Promise<void>;
}

const text = (value: Values[string]) => (typeof value === "string" ? value : undefined);

const sitesCreate: Command<{ domain: string; name: string; timezone: string; currency: string; industry: string }> = {
  options: {
    domain: { type: "string" },
    name: { type: "string" },
    timezone: { type: "string" },
    currency: { type: "string" },
    industry: { type: "string" },
  },
  parse(values) {
    const domain = text(values.domain);
    if (domain === undefined) throw new UsageError("sites create needs --domain, e.g. --domain example.com");
    // Empty strings take the same defaults as an API call without the field.
    return { domain, name: text(values.name) ?? "", timezone: text(values.timezone) ?? "", currency: text(values.currency) ?? "", industry: text(values.industry) ?? "" };
  },
  async run(db, args, io) {
    const [{ toJson }, { SiteSchema }, { createSite }, { siteToProto }] = await Promise.all([
      import("@bufbuild/protobuf"),
      import("../gen/beacon/v1/site_pb.js"),
      import("./core/management/sites.js"),
      import("./services/mappers.js"),
    ]);
    const site = await createSite(db.orm.em.fork(), await cliPrincipal(db.orm, io), { ...args, settings: {} });
    // The same shape the API returns, with the proto's field names.
    const json = toJson(SiteSchema, siteToProto(site), { useProtoFieldName: true, alwaysEmitImplicit: true });
    io.out(JSON.stringify(json, null, 2));
  },
};

const keysCreate: Command<{ role: RoleName; siteIds: string[]; name: string | undefined }> = {
  options: {
    role: { type: "string" },
    site: { type: "string", multiple: true },
    name: { type: "string" },
  },
  parse(values) {
    const role = text(values.role);
    if (role === undefined) throw new UsageError("keys create needs --role admin, analyst or viewer");
    if (!(ROLES as readonly string[]).includes(role)) throw new UsageError(`--role must be admin, analyst or viewer, got "${role}"`);
    return { role: role as RoleName, siteIds: (values.site as string[] | undefined) ?? [], name: text(values.name) };
  },
  async run(db, args, io) {
    const { createApiKey } = await import("./core/management/keys.js");
    const principal = await cliPrincipal(db.orm, io);
    const { secret } = await createApiKey(db.orm.em.fork(), principal, principal.organisationId, {
      displayName: args.name ?? `${args.role} key (created with the CLI)`,
      role: args.role,
      siteIds: args.siteIds,
    });
    io.out(secret);
  },
};

const migrateCommand: Command<Record<string, never>> = {
  options: {},
  parse: () => ({}),
  async run(db, _args, io) {
    // Opening the database applied them.
    io.out(db.migrationsApplied.length > 0 ? `applied ${db.migrationsApplied.join(", ")}` : "the database is up to date");
  },
};

const COMMANDS: Record<string, Command<any>> = {
  "sites create": sitesCreate,
  "keys create": keysCreate,
  migrate: migrateCommand,
};

/** Runs one command line (without `node` and the script) and returns the exit code. */
export async function runCli(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  if (argv.length === 0 || argv.includes("--help") || argv.includes("-h") || argv[0] === "help") {
    io.out(USAGE);
    return 0;
  }
  let command: Command<unknown>;
  let args: unknown;
  try {
    const words = argv.slice(0, 2).filter((arg) => !arg.startsWith("-"));
    const name = COMMANDS[words[0]] ? words[0] : words.join(" ");
    command = COMMANDS[name];
    if (!command) throw new UsageError(`unknown command "${words.join(" ") || argv[0]}"; run beacon --help for the list`);
    const { values } = parseArgs({ args: argv.slice(name.split(" ").length), options: command.options, allowPositionals: false, strict: true });
    args = command.parse(values);
  } catch (err) {
    // parseArgs's own errors (unknown option, missing value) are usage errors too.
    io.err(`beacon: ${describe(err)}`);
    return 2;
  }

  let config: BeaconConfig;
  try {
    // No argv: `--role` here is a key's role, not the server's process role.
    config = loadConfig(io.env, []);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.err(`beacon: ${err.message}`);
    return 2;
  }
  // Quiet unless asked: stdout carries only the result, and stderr only what went wrong.
  const logger = createLogger({ level: io.env.LOG_LEVEL ? config.logLevel : "warn", stream: { write: (line) => io.err(line.trimEnd()) } });

  let db: CliDatabase | undefined;
  try {
    db = await openCliDatabase(config, logger);
    await command.run(db, args, io);
    return 0;
  } catch (err) {
    // Domain errors name the field at fault; anything else is reported by its first line.
    io.err(`beacon: ${describe(err)}`);
    logger.debug("command failed", { err });
    return 1;
  } finally {
    await db?.close();
  }
}

interface CliDatabase {
  orm: MikroORM;
  migrationsApplied: string[];
  close(): Promise<void>;
}

async function openCliDatabase(config: BeaconConfig, logger: Logger): Promise<CliDatabase> {
  const [{ findRunningEmbeddedPostgres, startEmbeddedPostgres }, { closeOrm, createOrm, migrate }] = await Promise.all([
    import("./db/embedded.js"),
    import("./db/orm.js"),
  ]);
  let databaseUrl = config.databaseUrl ?? (await findRunningEmbeddedPostgres(config.dataDir));
  let embedded: { stop(): Promise<void> } | undefined;
  if (!databaseUrl) {
    const started = await startEmbeddedPostgres({ dataDir: config.dataDir, log: (line) => logger.debug("postgres", { line }) });
    databaseUrl = started.url;
    embedded = started;
  }
  let orm: MikroORM | undefined;
  try {
    orm = await createOrm({ databaseUrl });
    // Records need the current schema, whoever runs first: the CLI on a fresh install, or a server.
    const migrationsApplied = await migrate(orm);
    const opened = orm;
    return {
      orm: opened,
      migrationsApplied,
      async close() {
        await closeOrm(opened);
        await embedded?.stop();
      },
    };
  } catch (err) {
    if (orm) await closeOrm(orm);
    await embedded?.stop();
    throw err;
  }
}

/**
 * The CLI acts for the default organisation with the admin role, and its audit entries say `cli`.
 * On a database no server has started on yet, it creates that organisation the way a first start
 * does, admin key included (shown here, on stderr, since the server will not show it again).
 */
async function cliPrincipal(orm: MikroORM, io: CliIo): Promise<Principal> {
  const { bootstrap } = await import("./core/management/bootstrap.js");
  const first = await bootstrap(orm.em.fork());
  if (first.adminKey) {
    io.err("Beacon created an organisation and an admin API key. The key is shown only this once:");
    io.err(`  ${first.adminKey}`);
  }
  return { keyId: "", organisationId: first.organisation.id, role: "admin", siteIds: [], actor: "cli" };
}

/** One line about an error; driver errors (a refused connection) may have no message, only a code. */
function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const line = err.message.split("\n")[0];
  if (line) return line;
  const inner = err instanceof AggregateError ? (err.errors[0] as NodeJS.ErrnoException | undefined) : undefined;
  return inner?.message || (err as NodeJS.ErrnoException).code || err.name;
}
