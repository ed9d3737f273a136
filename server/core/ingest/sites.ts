// Finding the site an event belongs to, on every ingest request: by tracking id, or by the page's
// host name. Lookups are cached briefly (a site's settings apply within seconds of a change)
// so the hot path does not query Postgres per event.
import type { MikroORM } from "@mikro-orm/postgresql";
import { Site } from "../../db/entities/index.js";
import { effectiveSettings, type EffectiveSiteSettings } from "../management/sites.js";

export interface IngestSite {
  id: string;
  organisationId: string;
  trackingId: string;
  domain: string;
  timezone: string;
  currency: string;
  /** The site's domain, its extra host names: what counts as "the site itself" for referrers. */
  domains: string[];
  settings: EffectiveSiteSettings;
}

const TTL_MS = 10_000;
const MISS_TTL_MS = 2_000;
const MAX_ENTRIES = 50_000;

interface Entry {
  site: IngestSite | undefined;
  expires: number;
  pending?: Promise<IngestSite | undefined>;
}

function toIngestSite(site: Site): IngestSite {
  const settings = effectiveSettings(site.settings);
  return {
    id: site.id,
    organisationId: site.organisationId,
    trackingId: site.trackingId,
    domain: site.domain,
    timezone: site.timezone,
    currency: site.currency,
    domains: [site.domain, ...settings.additionalHostnames],
    settings,
  };
}

export class SiteDirectory {
  private readonly byKey = new Map<string, Entry>();

  constructor(private readonly orm: MikroORM, private readonly now: () => number = Date.now) {}

  byTrackingId(trackingId: string): Promise<IngestSite | undefined> {
    const id = trackingId.trim();
    if (id === "" || id.length > 64) return Promise.resolve(undefined);
    return this.cached(`t:${id.toUpperCase()}`, async () => {
      const site = await this.orm.em.fork().findOne(Site, { trackingId: id.toUpperCase(), deletedAt: null });
      return site ? toIngestSite(site) : undefined;
    });
  }

  byId(siteId: string): Promise<IngestSite | undefined> {
    if (!/^[0-9a-f-]{36}$/i.test(siteId)) return Promise.resolve(undefined);
    return this.cached(`i:${siteId.toLowerCase()}`, async () => {
      const site = await this.orm.em.fork().findOne(Site, { id: siteId.toLowerCase(), deletedAt: null });
      return site ? toIngestSite(site) : undefined;
    });
  }

  /**
   * The site whose domain is `hostname` or a parent of it (`www.example.com` → `example.com`),
   * or which lists it among its extra host names. The longest match wins.
   */
  byHostname(hostname: string): Promise<IngestSite | undefined> {
    const host = hostname.trim().toLowerCase().replace(/^www\./, "");
    if (host === "" || host.length > 253) return Promise.resolve(undefined);
    return this.cached(`h:${host}`, async () => {
      const candidates: string[] = [];
      const labels = host.split(".");
      for (let i = 0; i < labels.length; i++) candidates.push(labels.slice(i).join("."));
      const em = this.orm.em.fork();
      const sites = await em.find(Site, { domain: { $in: candidates }, deletedAt: null });
      sites.sort((a, b) => b.domain.length - a.domain.length || a.createdAt.getTime() - b.createdAt.getTime());
      if (sites[0]) return toIngestSite(sites[0]);
      const extra = await em.getConnection().execute<{ id: string }[]>(
        // array[?]: the driver expands an array parameter into a list, which `?|` cannot take bare.
        "select id from sites where deleted_at is null and settings->'additionalHostnames' \\?| array[?]::text[] order by created_at limit 1",
        [candidates],
      );
      if (!extra[0]) return undefined;
      const site = await em.findOne(Site, { id: extra[0].id });
      return site ? toIngestSite(site) : undefined;
    });
  }

  private cached(key: string, load: () => Promise<IngestSite | undefined>): Promise<IngestSite | undefined> {
    const now = this.now();
    const entry = this.byKey.get(key);
    if (entry?.pending) return entry.pending;
    if (entry && entry.expires > now) return Promise.resolve(entry.site);
    // One load per key at a time: a burst of events for a new site makes one query.
    const pending = load().then(
      (site) => {
        if (this.byKey.size >= MAX_ENTRIES) this.byKey.clear();
        this.byKey.set(key, { site, expires: this.now() + (site ? TTL_MS : MISS_TTL_MS) });
        return site;
      },
      (err: unknown) => {
        // Postgres is away (a restart, a failover): keep answering with the site as last known,
        // so accepting events, which needs only Redis, goes on; ask again shortly.
        if (entry?.site) {
          this.byKey.set(key, { site: entry.site, expires: this.now() + MISS_TTL_MS });
          return entry.site;
        }
        this.byKey.delete(key);
        throw err;
      },
    );
    this.byKey.set(key, { site: entry?.site, expires: 0, pending });
    return pending;
  }
}
