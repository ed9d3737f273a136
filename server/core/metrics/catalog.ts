// The metric definitions and settings a site's points are checked against, and queries planned
// with. Read on every ingest request, so cached briefly per (organisation, site): a changed
// definition applies within seconds. A name the cache does not know is looked up again at once
// (at most every MISS_RELOAD_MS), so a metric defined a moment ago is usable straight away.
import type { MikroORM } from "@mikro-orm/postgresql";
import { MetricDefinition } from "../../db/entities/index.js";
import { AlreadyExistsError } from "../errors.js";
import { createMetricDefinition, type AggregationName } from "../management/metric-definitions.js";
import { getSettings } from "../management/settings.js";
import type { Principal } from "../roles.js";
import type { MetricDefinitionView } from "./points.js";

export interface SiteCatalog {
  /** Defined metrics and KPIs by name: the organisation's, and the site's own. */
  definitions: ReadonlyMap<string, MetricDefinitionView>;
  /** Distinct tag combinations allowed per metric of the site (settings max_cardinality). */
  maxCardinality: number;
  loadedAt: number;
}

const TTL_MS = 2_000;
const MISS_RELOAD_MS = 100;
const MAX_ENTRIES = 10_000;

export class MetricCatalog {
  private readonly cache = new Map<string, { catalog: SiteCatalog } | { pending: Promise<SiteCatalog> }>();

  constructor(private readonly orm: MikroORM, private readonly now: () => number = Date.now) {}

  /** The site's catalog, from the cache when it is fresh enough. */
  async forSite(organisationId: string, siteId: string): Promise<SiteCatalog> {
    const key = `${organisationId}/${siteId}`;
    const entry = this.cache.get(key);
    if (entry && "pending" in entry) return entry.pending;
    if (entry && this.now() - entry.catalog.loadedAt < TTL_MS) return entry.catalog;
    return this.reload(key, organisationId, siteId);
  }

  /** The definitions of `names`, looking again once when some are missing from the cached catalog. */
  async resolve(organisationId: string, siteId: string, names: Iterable<string>): Promise<SiteCatalog> {
    let catalog = await this.forSite(organisationId, siteId);
    const missing = [...names].some((name) => !catalog.definitions.has(name));
    if (missing && this.now() - catalog.loadedAt >= MISS_RELOAD_MS) catalog = await this.reload(`${organisationId}/${siteId}`, organisationId, siteId);
    return catalog;
  }

  /**
   * Defines `name` as a gauge (the site setting auto_define_metrics): Beacon cannot tell what an
   * unknown measurement is, and a gauge's default (last value) never adds up values that must
   * not be added. Returns the definition, also when a concurrent request defined it first.
   */
  async autoDefine(principal: Principal, siteId: string, name: string): Promise<MetricDefinitionView> {
    try {
      await createMetricDefinition(this.orm.em.fork(), principal, {
        name,
        description: `Defined automatically by the first point sent for site ${siteId}.`,
        type: "gauge",
        unit: "",
        tags: [],
        aggregationDefault: undefined,
        retentionDays: 0,
        schema: undefined,
        formula: "",
      });
    } catch (err) {
      if (!(err instanceof AlreadyExistsError)) throw err;
    }
    const catalog = await this.reload(`${principal.organisationId}/${siteId}`, principal.organisationId, siteId);
    const definition = catalog.definitions.get(name);
    if (!definition) throw new Error(`metric ${name} was defined but cannot be read back`);
    return definition;
  }

  private reload(key: string, organisationId: string, siteId: string): Promise<SiteCatalog> {
    const pending = this.load(organisationId, siteId).then(
      (catalog) => {
        if (this.cache.size >= MAX_ENTRIES) this.cache.clear();
        this.cache.set(key, { catalog });
        return catalog;
      },
      (err: unknown) => {
        this.cache.delete(key);
        throw err;
      },
    );
    this.cache.set(key, { pending });
    return pending;
  }

  private async load(organisationId: string, siteId: string): Promise<SiteCatalog> {
    const em = this.orm.em.fork();
    const loadedAt = this.now();
    const rows = await em.find(MetricDefinition, { organisationId, deletedAt: null, $or: [{ siteId: null }, { siteId }] });
    const settings = await getSettings(em, organisationId);
    const definitions = new Map<string, MetricDefinitionView>();
    for (const row of rows) {
      definitions.set(row.name, {
        id: row.id,
        name: row.name,
        type: row.type,
        tags: row.tags,
        aggregationDefault: row.aggregationDefault as AggregationName,
        retentionDays: row.retentionDays > 0 ? row.retentionDays : settings.values.metricRetentionDays,
        schema: row.schema ?? {},
        formula: row.formula ?? null,
      });
    }
    return { definitions, maxCardinality: settings.values.maxCardinality, loadedAt };
  }
}
