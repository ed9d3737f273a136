// Settings read from the environment: INGEST_PARALLEL_STORES and INGEST_STORE_LINGER_MS default to the worker's own, a
// good value is taken, and a bad one stops the start with a line naming the variable.
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../server/config.js";
import { DEFAULT_PARALLEL_STORES, DEFAULT_STORE_LINGER_MS } from "../../workers/processors/ingest.js";

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

describe("INGEST_STORE_LINGER_MS", () => {
  it("defaults to the ingest processor's own default", () => {
    expect(loadConfig({}, []).ingestStoreLingerMs).toBe(DEFAULT_STORE_LINGER_MS);
  });

  it("takes a whole number of ms from 0 (store at once) to 1000", () => {
    expect(loadConfig({ INGEST_STORE_LINGER_MS: "0" }, []).ingestStoreLingerMs).toBe(0);
    expect(loadConfig({ INGEST_STORE_LINGER_MS: "1000" }, []).ingestStoreLingerMs).toBe(1000);
  });

  it("refuses anything else, naming the variable", () => {
    for (const bad of ["-1", "1001", "soon"]) {
      expect(() => loadConfig({ INGEST_STORE_LINGER_MS: bad }, [])).toThrow(/INGEST_STORE_LINGER_MS/);
    }
  });
});
