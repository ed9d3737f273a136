// An accepted hit as the ingest buffer queues it, for tests and the bench: empty fields unless the
// caller says otherwise, received when it happened.
import type { RawHit } from "../../server/core/ingest/hit.js";

export function rawHit(hit: Pick<RawHit, "siteId" | "eventId" | "ts"> & Partial<RawHit>): RawHit {
  return {
    name: "pageview", url: "", referrer: "", title: "", ip: "", userAgent: "", clientId: "", userId: "", screen: "", language: "",
    props: {}, revenue: null, currency: "", receivedAt: hit.ts, ...hit,
  };
}
