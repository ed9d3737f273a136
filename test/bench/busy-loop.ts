// A stand-in for the rest of Beacon's pipeline, beside the accept-floor reference: it keeps
// `duty` of one core busy (node --import tsx test/bench/busy-loop.ts 0.75) in 10 ms periods until
// SIGTERM, as the worker, Postgres and Redis keep the cores busy while the server answers.
const duty = Number(process.argv[2]);
if (!(duty > 0 && duty < 1)) throw new Error(`busy-loop: duty must be between 0 and 1, got ${process.argv[2]}`);
const periodMs = 10;

function busy(): void {
  const until = performance.now() + periodMs * duty;
  while (performance.now() < until) {
    // spin
  }
  setTimeout(busy, periodMs * (1 - duty));
}

busy();
process.stdout.write(`${JSON.stringify({ bench: "ready" })}\n`);
process.on("SIGTERM", () => process.exit(0));
