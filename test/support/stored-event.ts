// An events-table row as storeEvents takes it, for tests of the store: a plain desktop pageview
// unless the test says otherwise.
import type { StoredEvent } from "../../server/db/events-store.js";

export function storedEvent(event: Pick<StoredEvent, "siteId" | "eventId" | "ts"> & Partial<StoredEvent>): StoredEvent {
  return {
    name: "pageview", visitorId: 42n, sessionId: 1n, sessionStartedAt: event.ts,
    hostname: "shop.example.com", pathname: "/", title: "", referrer: "", referrerSource: "", referrerMedium: "",
    utmSource: "", utmMedium: "", utmCampaign: "", utmTerm: "", utmContent: "", clickId: "", country: "DE", region: "", city: "",
    browser: "Firefox", browserVersion: "121.0", os: "Linux", osVersion: "", deviceType: "desktop", screen: "", language: "",
    classification: 1, props: {}, revenue: null, receivedAt: event.ts, ...event,
  };
}
