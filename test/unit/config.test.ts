// Settings read from the environment: INGEST_PARALLEL_STORES' default is the worker's own, a
// good value is taken, and a bad one stops the start with a line naming the variable.
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../server/config.js";
import { DEFAULT_PARALLEL_STORES } from "../../workers/processors/ingest.js";

describe("INGEST_PARALLEL_STORES", () => {
  it("defaults to the ingest processor's own default", () => {
    expect(loadConfig({}, []).ingestParallelStores).toBe(DEFAULT_PARALLEL_STORES);
  });

  it("takes a whole number from 1 to 16", () => {
    expect(loadConfig({ INGEST_PARALLEL_STORES: "1" }, []).ingestParallelStores).toBe(1);
    expect(loadConfig({ INGEST_PARALLEL_STORES: "16" }, []).ingestParallelStores).toBe(16);
  });

  it("refuses anything else, naming the variable", () => {
    for (const bad of ["0", "17", "two", "-1"]) {
      expect(() => loadConfig({ INGEST_PARALLEL_STORES: bad }, [])).toThrow(ConfigError);
      expect(() => loadConfig({ INGEST_PARALLEL_STORES: bad }, [])).toThrow(/INGEST_PARALLEL_STORES/);
    }
  });
});
