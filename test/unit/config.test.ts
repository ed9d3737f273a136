// Settings read from the environment: the worker's store settings default to the worker's own
// defaults, WORKER_NICE to 10; a good value is taken, and a bad one stops the start with a line
// naming the variable.
import { describe, expect, it } from "vitest";
import { type BeaconConfig, ConfigError, loadConfig } from "../../server/config.js";
import { DEFAULT_PARALLEL_STORES, DEFAULT_STORE_LINGER_MS } from "../../workers/processors/ingest.js";

const SETTINGS: { name: string; field: keyof BeaconConfig; processorDefault: number; accepted: [string, number][]; refused: string[] }[] = [
  { name: "INGEST_PARALLEL_STORES", field: "ingestParallelStores", processorDefault: DEFAULT_PARALLEL_STORES, accepted: [["1", 1], ["16", 16]], refused: ["0", "17", "two", "-1"] },
  { name: "INGEST_STORE_LINGER_MS", field: "ingestStoreLingerMs", processorDefault: DEFAULT_STORE_LINGER_MS, accepted: [["0", 0], ["1000", 1000]], refused: ["-1", "1001", "soon"] },
];

describe.each(SETTINGS)("$name", ({ name, field, processorDefault, accepted, refused }) => {
  it("defaults to the ingest processor's own default", () => {
    expect(loadConfig({}, [])[field]).toBe(processorDefault);
  });

  it("takes a whole number within its bounds", () => {
    for (const [text, value] of accepted) expect(loadConfig({ [name]: text }, [])[field]).toBe(value);
  });

  it("refuses anything else, naming the variable", () => {
    for (const bad of refused) {
      expect(() => loadConfig({ [name]: bad }, [])).toThrow(ConfigError);
      expect(() => loadConfig({ [name]: bad }, [])).toThrow(new RegExp(name));
    }
  });
});

describe("WORKER_NICE", () => {
  it("defaults to 10, takes 0 to 19 and refuses anything else, naming the variable", () => {
    expect(loadConfig({}, []).workerNice).toBe(10);
    for (const [text, value] of [["0", 0], ["19", 19]] as const) expect(loadConfig({ WORKER_NICE: text }, []).workerNice).toBe(value);
    for (const bad of ["-1", "20", "low"]) expect(() => loadConfig({ WORKER_NICE: bad }, [])).toThrow(/WORKER_NICE/);
  });
});
