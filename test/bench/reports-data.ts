// Seed data for the reports bench (test/bench/reports.ts): N events over the last D days for one
// site, generated inside Postgres (`insert … select … from generate_series`), one statement per
// UTC day of visit starts, writing the visits' `sessions` rows and their `events` together.
//
// Every random choice is a hash of the visit's number (hashint8extended), so a run is repeatable
// and events and their session row agree by construction:
//   - visits start through the day with a daily swell (±50%), fewer at weekends, slowly growing;
//   - ~30% of visits come from a pool of 300,000 returning visitors, the rest from new ones;
//     visitor and session ids are uniformly random 64-bit values, as HMAC outputs are;
//   - 1–8 pageviews a visit (40% bounce), a fixed pace of 20–120 s between events; 15% of human
//     visits also send one custom event (Download, Outbound Link: Click, Signup, Purchase with
//     revenue) after their first pageview;
//   - pages Zipf-like over 2,000 paths ("/" most), 15 sources (direct, search, social, referral,
//     a newsletter with UTM tags) on the visit's first event, 60 countries (Zipf-like, cities for
//     the first ten), 3 device types with browsers and OSes to match; 2% bots (one pageview);
//   - the session row is what ingestion (server/db/events-store.ts) would have made of those
//     events: started_at/ended_at = first/last event, entry/exit page and time = first/last
//     pageview, counts,
//     is_bounce = at most one pageview and one event, duration = ended_at − started_at in whole
//     seconds, source/country/device/classification of the first event.
import type { Pool } from "pg";
import { ensurePartitions } from "../../server/db/partitions.js";

const DAY = 86_400_000;

/** Visit-number hash → uniform [0, 1): 53 bits of hashint8extended(expr, salt). */
const u = (expr: string, salt: number) => `(((hashint8extended((${expr})::int8, ${salt}) >> 11) & 9007199254740991)::float8 / 9007199254740992.0)`;

export const PAGES = 2000;
/** Mean events per visit the shapes below give (humans 2.94, bots 1): sizes the visit count. */
export const EVENTS_PER_VISIT = 0.98 * (2.79 + 0.15) + 0.02 * 1;

// Sources with their share of visits (%), as the enrichment would classify them.
const SOURCES: [number, string, string, string, string, string, string][] = [
  // weight, source, medium, referrer, utm_source, utm_medium, utm_campaign
  [34, "", "direct", "", "", "", ""],
  [30, "Google", "search", "google.com", "", "", ""],
  [4, "Bing", "search", "bing.com", "", "", ""],
  [3, "DuckDuckGo", "search", "duckduckgo.com", "", "", ""],
  [1, "Ecosia", "search", "ecosia.org", "", "", ""],
  [1, "Yahoo!", "search", "search.yahoo.com", "", "", ""],
  [5, "Twitter", "social", "t.co", "", "", ""],
  [3, "Facebook", "social", "facebook.com", "", "", ""],
  [4, "Reddit", "social", "reddit.com/r/webdev", "", "", ""],
  [2, "LinkedIn", "social", "linkedin.com", "", "", ""],
  [4, "Hacker News", "social", "news.ycombinator.com", "", "", ""],
  [3, "github.com", "referral", "github.com/beacon/beacon", "", "", ""],
  [3, "newsletter", "email", "", "newsletter", "email", "weekly"],
  [1, "Product Hunt", "social", "producthunt.com", "", "", ""],
  [2, "dev.to", "referral", "dev.to", "", "", ""],
];

const COUNTRIES = "US DE GB FR IN CA NL BR ES IT PL SE AU JP CH AT BE RU UA TR MX CZ DK NO FI PT IE IL SG KR CN ID AR RO HU GR ZA NZ VN PH TW HK TH MY CO CL PE EG NG KE PK BD SA AE SK BG HR RS LT EE".split(" ");

// Device type, browser, OS, screen, share (%).
const DEVICES: [number, string, string, string, string][] = [
  [30, "desktop", "Chrome", "Windows", "1920x1080"],
  [8, "desktop", "Firefox", "Windows", "1920x1080"],
  [9, "desktop", "Safari", "Mac OS", "1440x900"],
  [4, "desktop", "Edge", "Windows", "1920x1080"],
  [4, "desktop", "Firefox", "Linux", "2560x1440"],
  [20, "mobile", "Chrome Mobile", "Android", "412x915"],
  [18, "mobile", "Mobile Safari", "iOS", "390x844"],
  [2, "mobile", "Samsung Internet", "Android", "360x800"],
  [3, "tablet", "Mobile Safari", "iPadOS", "820x1180"],
  [2, "tablet", "Chrome", "Android", "800x1280"],
];

const quote = (s: string) => `'${s.replaceAll("'", "''")}'`;

/** A VALUES list with cumulative [lo, hi) bounds from weights. */
function weighted<T extends unknown[]>(rows: [number, ...T][]): string {
  const total = rows.reduce((sum, r) => sum + r[0], 0);
  let acc = 0;
  return rows
    .map(([w, ...rest], i) => {
      const lo = acc / total;
      acc += w;
      const hi = i === rows.length - 1 ? 2 : acc / total;
      return `(${lo}::float8, ${hi}::float8, ${rest.map((v) => quote(String(v))).join(", ")})`;
    })
    .join(",\n    ");
}

/** A page rank 1…PAGES, Zipf-like (P(r) ∝ ln((r+1)/r) ≈ 1/r), for visit `n`'s j-th pageview. */
const pageRank = (j: string) => `least(${PAGES}, floor(exp(${u(`n * 8 + ${j}`, 13)} * ln(${PAGES + 1})))::int)`;
const pathOf = (rank: string) =>
  `(case when ${rank} = 1 then '/' when ${rank} % 4 = 0 then '/blog/post-' || ${rank} when ${rank} % 4 = 1 then '/docs/page-' || ${rank} when ${rank} % 4 = 2 then '/products/item-' || ${rank} else '/p/' || ${rank} end)`;

/**
 * One day of visits: numbers n in [$3, $4], starting in [$2, $2 + $5 ms). $1 = site id, $6 = hostname.
 * Inserts the sessions (a data-modifying CTE) and the events of those visits.
 */
const DAY_SQL = `with src(lo, hi, source, medium, referrer, utm_source, utm_medium, utm_campaign) as (values
    ${weighted(SOURCES)}
),
dev(lo, hi, device_type, browser, os, screen) as (values
    ${weighted(DEVICES)}
),
ctry(i, code) as (values ${COUNTRIES.map((c, i) => `(${i + 1}, ${quote(c)})`).join(", ")}),
base as (
  select n,
    ${u("n", 1)} as r_start,
    ${u("n", 2)} < 0.3 as returning,
    ${u("n", 4)} < 0.02 as bot,
    ${u("n", 5)} as r_pv,
    ${u("n", 6)} < 0.15 as r_custom,
    ${u("n", 7)} as r_src,
    ${u("n", 10)} as r_dev,
    least(${COUNTRIES.length}, floor(exp(${u("n", 11)} * ln(${COUNTRIES.length + 1})))::int) as country_i,
    20000 + floor(${u("n", 12)} * 100000)::int as gap_ms,
    ${u("n", 14)} as r_name,
    ${u("n", 15)} as r_at
  from generate_series($3::int8, $4::int8) as n
),
v as materialized (
  select b.n,
    $1::uuid as site_id,
    hashint8extended(b.n, 9) as session_id,
    case when b.returning then hashint8extended(floor(${u("b.n", 3)} * 300000)::int8, 7) else hashint8extended(b.n, 8) end as visitor_id,
    case when b.bot then 2 else 1 end::int2 as classification,
    $2::timestamptz + floor((b.r_start - 0.08 * sin(2 * pi() * b.r_start)) * $5::float8)::int8 * interval '1 millisecond' as started_at,
    x.pv, x.pv + x.custom as ev,
    case when x.custom = 1 then 2 + floor(b.r_at * x.pv)::int else 0 end as custom_at,
    case when b.r_name < 0.35 then 'Download' when b.r_name < 0.65 then 'Outbound Link: Click' when b.r_name < 0.9 then 'Signup' else 'Purchase' end as custom_name,
    b.gap_ms,
    case when b.bot then '' else src.source end as source,
    case when b.bot then 'direct' else src.medium end as medium,
    case when b.bot then '' else src.referrer end as referrer,
    case when b.bot then '' else src.utm_source end as utm_source,
    case when b.bot then '' else src.utm_medium end as utm_medium,
    case when b.bot then '' else src.utm_campaign || case when src.utm_campaign <> '' then '-' || (b.n % 12) else '' end end as utm_campaign,
    ctry.code as country,
    case when b.country_i <= 10 then ctry.code || '-' || (b.n % 3) else '' end as region,
    case when b.country_i <= 10 then ctry.code || ' city ' || (b.n % 5) else '' end as city,
    case when b.bot then 'desktop' else dev.device_type end as device_type,
    case when b.bot then 'Chrome' else dev.browser end as browser,
    case when b.bot then 'Linux' else dev.os end as os,
    case when b.bot then '1920x1080' else dev.screen end as screen
  from base b
  cross join lateral (select
      case when b.bot then 1 when b.r_pv < 0.40 then 1 when b.r_pv < 0.58 then 2 when b.r_pv < 0.70 then 3 when b.r_pv < 0.79 then 4
        when b.r_pv < 0.86 then 5 when b.r_pv < 0.92 then 6 when b.r_pv < 0.96 then 7 else 8 end as pv,
      case when b.r_custom and not b.bot then 1 else 0 end as custom) x
  join src on b.r_src >= src.lo and b.r_src < src.hi
  join dev on b.r_dev >= dev.lo and b.r_dev < dev.hi
  join ctry on ctry.i = b.country_i
),
visits as (
  insert into sessions (site_id, session_id, visitor_id, started_at, ended_at, entry_page, entry_at, exit_page, exit_at, pageviews, events, is_bounce, duration_seconds,
    referrer_source, referrer_medium, utm_source, utm_medium, utm_campaign, country, region, city, browser, os, device_type, classification)
  select v.site_id, v.session_id, v.visitor_id, v.started_at, v.started_at + (v.ev - 1) * v.gap_ms * interval '1 millisecond',
    ${pathOf(pageRank("1"))}, v.started_at,
    -- The last pageview is the last event, or the one before it when the custom event comes last.
    ${pathOf(pageRank("v.pv"))}, v.started_at + (case when v.custom_at > 0 and v.custom_at <= v.pv then v.pv else v.pv - 1 end) * v.gap_ms * interval '1 millisecond',
    v.pv, v.ev, v.pv <= 1 and v.ev <= 1,
    extract(epoch from (v.ev - 1) * v.gap_ms * interval '1 millisecond')::int,
    v.source, v.medium, v.utm_source, v.utm_medium, v.utm_campaign, v.country, v.region, v.city, v.browser, v.os, v.device_type, v.classification
  from v
)
insert into events (site_id, ts, event_id, name, visitor_id, session_id, hostname, pathname, title, referrer, browser_version, os_version, screen, language,
  referrer_source, referrer_medium, utm_source, utm_medium, utm_campaign, country, region, city, browser, os, device_type, classification, props, revenue, received_at)
select v.site_id, t.ts, v.n || '-' || k, t.name, v.visitor_id, v.session_id, $6::text, ${pathOf(pageRank("t.j"))}, '',
  case when k = 1 then v.referrer else '' end, '120.0', '', v.screen, case when v.country = 'DE' or v.country = 'AT' then 'de-DE' else 'en-US' end,
  case when k = 1 then v.source else '' end, case when k = 1 then v.medium else 'direct' end,
  case when k = 1 then v.utm_source else '' end, case when k = 1 then v.utm_medium else '' end, case when k = 1 then v.utm_campaign else '' end,
  v.country, v.region, v.city, v.browser, v.os, v.device_type, v.classification,
  case when t.name = 'pageview' then '{}'::jsonb
    when t.name = 'Download' then '{"file": "report.pdf"}'::jsonb
    when t.name = 'Signup' or t.name = 'Purchase' then jsonb_build_object('plan', case when v.n % 3 = 0 then 'pro' else 'free' end)
    else '{"url": "https://github.com/beacon/beacon"}'::jsonb end,
  case when t.name = 'Purchase' then 49.00 end,
  t.ts
from v
cross join lateral generate_series(1, v.ev) as k
cross join lateral (select
    v.started_at + (k - 1) * v.gap_ms * interval '1 millisecond' as ts,
    case when k = v.custom_at then v.custom_name else 'pageview' end as name,
    -- The pageview an event belongs to: a custom event happens on the page viewed just before it.
    case when v.custom_at > 0 and k >= v.custom_at then k - 1 else k end as j) t`;

export interface SeedOptions {
  siteId: string;
  hostname: string;
  events: number;
  days: number;
  /** End of the data (the last visit starts before it); the first day starts `days` days earlier. */
  end: number;
  /** Statements run at once (each on its own connection). */
  concurrency: number;
  log: (line: string) => void;
}

export interface SeedResult {
  events: number;
  sessions: number;
  ms: number;
  first: number;
  end: number;
}

/** Visits per day: fewer at weekends (×0.75) and growing by 20% over the range, summing to `total`. */
function visitsPerDay(total: number, days: number, start: number): number[] {
  const weights = Array.from({ length: days }, (_, d) => {
    const weekday = new Date(start + d * DAY + DAY / 2).getUTCDay();
    return (weekday === 0 || weekday === 6 ? 0.75 : 1) * (0.9 + (0.2 * d) / Math.max(1, days - 1));
  });
  const sum = weights.reduce((a, b) => a + b, 0);
  return weights.map((w) => Math.round((total * w) / sum));
}

export async function seedEvents(pool: Pool, o: SeedOptions): Promise<SeedResult> {
  const first = o.end - o.days * DAY;
  await ensurePartitions(pool, "events", new Date(first - DAY), new Date(o.end + DAY));
  await ensurePartitions(pool, "sessions", new Date(first - DAY), new Date(o.end + DAY));
  const perDay = visitsPerDay(Math.round(o.events / EVENTS_PER_VISIT), o.days, first);
  const jobs = perDay.map((visits, d) => {
    const from = 1 + perDay.slice(0, d).reduce((a, b) => a + b, 0);
    return { d, from, to: from + visits - 1 };
  });
  const started = performance.now();
  let next = 0;
  let done = 0;
  let events = 0;
  let sessions = 0;
  const worker = async () => {
    const client = await pool.connect();
    try {
      // Seeding only: a crash loses the seed, which is thrown away anyway.
      await client.query("set synchronous_commit = off");
      // JIT compiling this statement took longer (3.4 s) than running it (2.7 s).
      await client.query("set jit = off");
      while (next < jobs.length) {
        const job = jobs[next++];
        const result = await client.query(DAY_SQL, [o.siteId, new Date(first + job.d * DAY).toISOString(), job.from, job.to, DAY, o.hostname]);
        events += result.rowCount ?? 0;
        sessions += job.to - job.from + 1;
        done++;
        if (done % 10 === 0 || done === jobs.length) {
          const s = (performance.now() - started) / 1000;
          o.log(`seeded ${done}/${jobs.length} days: ${events.toLocaleString("en-US")} events, ${sessions.toLocaleString("en-US")} visits in ${s.toFixed(0)} s`);
        }
      }
    } finally {
      client.release();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.concurrency) }, worker));
  return { events, sessions, ms: performance.now() - started, first, end: o.end };
}
