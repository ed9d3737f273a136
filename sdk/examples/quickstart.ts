// The README's SDK example: lists the organisation's sites, then asks for the last seven days'
// pageviews and visitors by page of the first one. Run it against a running Beacon:
//
//   BEACON_API_KEY=bk_… npx tsx sdk/examples/quickstart.ts
//
// BEACON_URL defaults to http://localhost:8787; BEACON_PROTOCOL=grpc switches to gRPC over h2c.
import { createBeaconClient } from "../index.js";
import { createNodeTransport } from "../node.js";

const baseUrl = process.env.BEACON_URL ?? "http://localhost:8787";
const apiKey = process.env.BEACON_API_KEY;
if (!apiKey) {
  console.error("set BEACON_API_KEY to a key printed by `npm start` or made by `npx beacon keys create`");
  process.exit(2);
}

const beacon =
  process.env.BEACON_PROTOCOL === "grpc"
    ? createBeaconClient({ transport: createNodeTransport({ baseUrl, apiKey, protocol: "grpc" }) })
    : createBeaconClient({ baseUrl, apiKey });

const { sites } = await beacon.management.listSites({ pageSize: 50 });
for (const site of sites) console.log(`${site.trackingId}  ${site.domain}  (${site.id})`);
if (sites.length === 0) {
  console.log("no sites yet: npx beacon sites create --domain example.com");
  process.exit(0);
}

// Calendar days, read in the site's time zone; today's date in UTC is close enough here.
const day = (daysAgo: number) => new Date(Date.now() - daysAgo * 86_400_000).toISOString().slice(0, 10);
const report = await beacon.reporting.runReport({
  siteId: sites[0].id,
  dateRange: { startDate: day(7), endDate: day(0) },
  metrics: ["pageviews", "visitors"],
  dimensions: ["page"],
  limit: 10,
});
if (report.rows.length === 0) console.log("no pageviews in the last 7 days yet");
for (const row of report.rows) {
  console.log(`${row.dimensions.page}  ${Object.entries(row.metrics).map(([metric, value]) => `${metric}=${value}`).join(" ")}`);
}
