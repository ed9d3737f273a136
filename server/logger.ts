// One JSON object per line, so `journalctl`, Docker and any log shipper can parse Beacon's output
// without a pattern. Deliberately tiny: levels, bound fields, and nothing that could throw.

export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** Whether a record at `level` would be written; lets callers skip building costly fields. */
  enabled(level: Exclude<LogLevel, "silent">): boolean;
  /** A logger that adds `fields` to every record it writes. */
  child(fields: LogFields): Logger;
}

export interface LoggerOptions {
  level: LogLevel;
  /** Where lines go; stdout unless a test passes its own. */
  stream?: { write(line: string): unknown };
  /** Clock for the `time` field; injectable so tests can pin it. */
  now?: () => Date;
}

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: Infinity };

// The record's own keys always win, so a field called `msg` cannot disguise a record.
const reserved = new Set(["time", "level", "msg"]);

export function createLogger(options: LoggerOptions): Logger {
  const stream = options.stream ?? process.stdout;
  const now = options.now ?? (() => new Date());
  return build(rank[options.level], stream, now, {});
}

function build(threshold: number, stream: { write(line: string): unknown }, now: () => Date, bound: LogFields): Logger {
  const write = (level: Exclude<LogLevel, "silent">, msg: string, fields?: LogFields) => {
    if (rank[level] < threshold) return;
    const record: LogFields = { time: now().toISOString(), level, msg };
    for (const source of [bound, fields]) {
      if (!source) continue;
      for (const [key, value] of Object.entries(source)) {
        if (!reserved.has(key) && value !== undefined) record[key] = value;
      }
    }
    stream.write(serialize(record) + "\n");
  };
  return {
    debug: (msg, fields) => write("debug", msg, fields),
    info: (msg, fields) => write("info", msg, fields),
    warn: (msg, fields) => write("warn", msg, fields),
    error: (msg, fields) => write("error", msg, fields),
    enabled: (level) => rank[level] >= threshold,
    child: (fields) => build(threshold, stream, now, { ...bound, ...fields }),
  };
}

function serialize(record: LogFields): string {
  try {
    return JSON.stringify(record, replacer);
  } catch {
    // A cycle or a throwing getter in a field must not take the process down with it.
    return JSON.stringify({ time: record.time, level: record.level, msg: record.msg, log_error: "fields not serializable" });
  }
}

function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    const out: LogFields = { name: value.name, message: value.message };
    const code = (value as { code?: unknown }).code;
    if (code !== undefined) out.code = code;
    if (value.stack) out.stack = value.stack;
    return out;
  }
  if (typeof value === "bigint") return value.toString();
  return value;
}
