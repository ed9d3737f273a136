// Authentication and role checks for every RPC, declared in one table so a new RPC cannot ship
// without a decision: an RPC missing from the table needs an admin key (fail closed).
import { type ContextValues, createContextKey, type Interceptor } from "@connectrpc/connect";
import { ExportService } from "../../gen/beacon/v1/export_service_pb.js";
import { ManagementService } from "../../gen/beacon/v1/management_service_pb.js";
import { ReportingService } from "../../gen/beacon/v1/reporting_service_pb.js";
import { StreamingService } from "../../gen/beacon/v1/streaming_service_pb.js";
import { TrackingService } from "../../gen/beacon/v1/tracking_service_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { keyFromAuthorization } from "../core/api-keys.js";
import { PermissionDeniedError, UnauthenticatedError } from "../core/errors.js";
import { type Principal, type RoleName, roleAllows } from "../core/roles.js";

/** `public`: no key needed (a key, if sent, is still checked). */
export type Requirement = "public" | RoleName;

type ServiceLike = { typeName: string; method: Record<string, { name: string }> };

function table(service: ServiceLike, rules: Record<string, Requirement>): [string, Requirement][] {
  const entries: [string, Requirement][] = [];
  for (const [localName, requirement] of Object.entries(rules)) {
    const method = service.method[localName];
    if (!method) throw new Error(`auth table names unknown RPC ${service.typeName}.${localName}`);
    entries.push([`${service.typeName}/${method.name}`, requirement]);
  }
  return entries;
}

/** Procedure (`beacon.v1.X/Method`) → least role needed. Site access is checked by the services. */
export const REQUIREMENTS: ReadonlyMap<string, Requirement> = new Map([
  ...table(Health, { check: "public", watch: "public" }),
  ...table(TrackingService, {
    trackEvent: "public",
    trackEvents: "public",
    collect: "public",
    validateEvents: "public",
    recordHit: "analyst",
    ingestMetricPoints: "analyst",
    validateMetricPoints: "analyst",
    startBulkIngest: "analyst",
    getBulkIngest: "analyst",
  }),
  ...table(ReportingService, {
    runReport: "viewer",
    getTimeSeries: "viewer",
    getRealtime: "viewer",
    aggregate: "viewer",
    batchRunReports: "viewer",
    queryInstant: "viewer",
    searchSeries: "viewer",
  }),
  ...table(ManagementService, {
    getOrganisation: "viewer",
    listOrganisations: "viewer",
    updateOrganisation: "admin",
    createSite: "admin",
    getSite: "viewer",
    listSites: "viewer",
    updateSite: "admin",
    deleteSite: "admin",
    createGoal: "analyst",
    getGoal: "viewer",
    listGoals: "viewer",
    updateGoal: "analyst",
    deleteGoal: "analyst",
    createApiKey: "admin",
    getApiKey: "admin",
    listApiKeys: "admin",
    revokeApiKey: "admin",
    getMyPermissions: "viewer",
    createMetricDefinition: "analyst",
    getMetricDefinition: "viewer",
    listMetricDefinitions: "viewer",
    updateMetricDefinition: "analyst",
    deleteMetricDefinition: "analyst",
    getSettings: "viewer",
    updateSettings: "admin",
    getQuotas: "viewer",
    updateQuotas: "admin",
    listAuditEntries: "admin",
    listDeadLetters: "analyst",
    getRollupPolicy: "viewer",
    updateRollupPolicy: "admin",
    runRollup: "admin",
  }),
  ...table(StreamingService, {
    watchRealtime: "viewer",
    tailEvents: "viewer",
    createSubscription: "analyst",
    getSubscription: "viewer",
    listSubscriptions: "viewer",
    updateSubscription: "analyst",
    deleteSubscription: "analyst",
    listDeliveries: "viewer",
  }),
  ...table(ExportService, {
    createExport: "analyst",
    getExport: "viewer",
    listExports: "viewer",
    downloadExport: "viewer",
    cancelExport: "analyst",
    createReportSchedule: "analyst",
    getReportSchedule: "viewer",
    listReportSchedules: "viewer",
    updateReportSchedule: "analyst",
    deleteReportSchedule: "analyst",
  }),
]);

/** Resolves an API key secret to its principal; undefined for unknown or revoked keys. */
export interface PrincipalResolver {
  resolve(secret: string): Promise<Principal | undefined>;
}

export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "the caller's API key" });

export function createAuthInterceptor(keys: PrincipalResolver): Interceptor {
  return (next) => async (req) => {
    const procedure = `${req.service.typeName}/${req.method.name}`;
    const requirement = REQUIREMENTS.get(procedure) ?? "admin";
    const secret = keyFromAuthorization(req.header.get("authorization"));
    if (secret !== undefined) {
      const principal = await keys.resolve(secret);
      if (!principal) throw new UnauthenticatedError("the API key is not valid or has been revoked");
      req.contextValues.set(principalKey, principal);
    }
    if (requirement !== "public") {
      const principal = req.contextValues.get(principalKey);
      if (!principal) throw new UnauthenticatedError();
      if (!roleAllows(principal.role, requirement)) {
        throw new PermissionDeniedError(`${req.method.name} needs a key with the ${requirement} role; this key is ${principal.role}`);
      }
    }
    return next(req);
  };
}

/** The checked caller of an RPC the table marks as needing a key. */
export function principalOf(values: ContextValues): Principal {
  const principal = values.get(principalKey);
  if (!principal) throw new UnauthenticatedError();
  return principal;
}
