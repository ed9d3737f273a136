// Beacon as the bench runs it: `start()` from server/main.ts in its own process, configured by
// the environment (DATABASE_URL, REDIS_URL, REDIS_PREFIX, BEACON_ROLE=server|worker|all). Prints
// {"bench":"ready","port":N} on stdout once it listens (port 0 for a worker).
//
// Over the IPC channel it takes {cmd:"profile-start"} and {cmd:"profile-stop", file} to record a
// CPU profile of one phase (the inspector's sampling profiler), answering {profiled:file}; and
// {cmd:"trace-start"} / {cmd:"trace-stop"}, answering {trace} with the event loop's utilisation,
// the process's CPU and, with BENCH_TRACE=1, per-step timings (trace.ts).
import { writeFile } from "node:fs/promises";
import { Session } from "node:inspector/promises";
import { loadConfig } from "../../server/config.js";
import { createLogger } from "../../server/logger.js";
import { start } from "../../server/main.js";
import { applyWhatIf, installTracing, startTrace, stopTrace } from "./trace.js";

// BENCH_WHATIF=…: diagnosis only, steps replaced by no-ops (see trace.ts). Applied before
// tracing so traced calls are the replacements.
if (process.env.BENCH_WHATIF) applyWhatIf(process.env.BENCH_WHATIF.split(",").map((w) => w.trim()).filter(Boolean));
// BENCH_TRACE=1: time every ingest step, Redis command and Postgres statement (see trace.ts).
if (process.env.BENCH_TRACE === "1") installTracing();

const config = loadConfig(process.env, []);
const logger = createLogger({ level: config.logLevel });
const running = await start(config, logger, () => {});
process.stdout.write(`${JSON.stringify({ bench: "ready", port: running.port, role: config.role })}\n`);

let session: Session | undefined;
process.on("message", (message: { cmd: string; file?: string }) => {
  void (async () => {
    if (message.cmd === "trace-start") {
      startTrace();
      process.send?.({ tracing: true });
    } else if (message.cmd === "trace-stop") {
      process.send?.({ trace: stopTrace() });
    } else if (message.cmd === "profile-start") {
      session = new Session();
      session.connect();
      await session.post("Profiler.enable");
      await session.post("Profiler.setSamplingInterval", { interval: 200 });
      await session.post("Profiler.start");
      process.send?.({ profiling: true });
    } else if (message.cmd === "profile-stop" && session && message.file) {
      const { profile } = await session.post("Profiler.stop");
      await writeFile(message.file, JSON.stringify(profile));
      session.disconnect();
      session = undefined;
      process.send?.({ profiled: message.file });
    }
  })();
});

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  setTimeout(() => process.exit(1), 15_000).unref();
  running.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on("SIGTERM", stop);
process.on("disconnect", stop);
