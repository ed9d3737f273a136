// ManagementService: thin by design. Each method checks the caller, calls one core operation in
// a forked EntityManager, and maps the records to proto. Roles are checked by the auth
// interceptor; site and organisation reach by the core.
import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { MikroORM } from "@mikro-orm/postgresql";
import * as pb from "../../gen/beacon/v1/management_service_pb.js";
import { PermissionsSchema } from "../../gen/beacon/v1/api_key_pb.js";
import type { ManagementService } from "../../gen/beacon/v1/management_service_pb.js";
import { loadSite } from "../core/management/access.js";
import * as goals from "../core/management/goals.js";
import * as keys from "../core/management/keys.js";
import * as metrics from "../core/management/metric-definitions.js";
import * as orgs from "../core/management/organisations.js";
import * as settings from "../core/management/settings.js";
import * as sites from "../core/management/sites.js";
import * as rollups from "../core/management/rollup-policy.js";
import { sqlPool } from "../db/orm.js";
import { rollSite } from "../db/rollups.js";
import { decodePageToken, pageSize } from "../core/page-token.js";
import { permissionsOf } from "../core/roles.js";
import { principalOf } from "../interceptors/auth.js";
import { Idempotency } from "./idempotency.js";
import * as map from "./mappers.js";

/** Events accepted this month for an organisation, as the ingestion path counts them. */
export interface UsageReader {
  eventsThisMonth(organisationId: string): Promise<bigint>;
}

export interface ManagementDeps {
  orm: MikroORM;
  usage: UsageReader;
  /** Called after a key is revoked, so this server stops accepting it at once. */
  onKeyRevoked?: () => void;
}

export class ManagementServiceImpl implements ServiceImpl<typeof ManagementService> {
  private readonly idempotency: Idempotency;

  constructor(private readonly deps: ManagementDeps) {
    this.idempotency = new Idempotency(deps.orm);
  }

  private em() {
    return this.deps.orm.em.fork();
  }

  async getOrganisation(req: pb.GetOrganisationRequest, ctx: HandlerContext) {
    const organisation = await orgs.loadOrganisation(this.em(), principalOf(ctx.values), req.id);
    return create(pb.GetOrganisationResponseSchema, { organisation: map.organisationToProto(organisation) });
  }

  async listOrganisations(req: pb.ListOrganisationsRequest, ctx: HandlerContext) {
    // A key belongs to exactly one organisation: the list is one item on one page, but its
    // paging inputs are still checked like every list's.
    pageSize(req.pageSize);
    const after = decodePageToken(req.pageToken);
    const organisations = after ? [] : [await orgs.loadOrganisation(this.em(), principalOf(ctx.values), "")];
    return create(pb.ListOrganisationsResponseSchema, { organisations: organisations.map(map.organisationToProto), nextPageToken: "" });
  }

  async updateOrganisation(req: pb.UpdateOrganisationRequest, ctx: HandlerContext) {
    const organisation = await this.em().transactional((em) => orgs.updateOrganisation(em, principalOf(ctx.values), req.id, { etag: req.etag, name: req.name }));
    return create(pb.UpdateOrganisationResponseSchema, { organisation: map.organisationToProto(organisation) });
  }

  async createSite(req: pb.CreateSiteRequest, ctx: HandlerContext) {
    const principal = principalOf(ctx.values);
    return this.idempotency.run(
      { ctx, principal, requestSchema: pb.CreateSiteRequestSchema, request: req, responseSchema: pb.CreateSiteResponseSchema },
      async (em) => {
        const site = await sites.createSite(em, principal, {
          domain: req.domain,
          name: req.name,
          timezone: req.timezone,
          currency: req.currency,
          industry: req.industry,
          settings: map.siteSettingsFromProto(req.settings),
        });
        return create(pb.CreateSiteResponseSchema, { site: map.siteToProto(site) });
      },
    );
  }

  async getSite(req: pb.GetSiteRequest, ctx: HandlerContext) {
    const site = await loadSite(this.em(), principalOf(ctx.values), req.id, "id");
    return create(pb.GetSiteResponseSchema, { site: map.siteToProto(site) });
  }

  async listSites(req: pb.ListSitesRequest, ctx: HandlerContext) {
    const page = await sites.listSites(this.em(), principalOf(ctx.values), req);
    return create(pb.ListSitesResponseSchema, { sites: page.items.map(map.siteToProto), nextPageToken: page.nextPageToken });
  }

  async updateSite(req: pb.UpdateSiteRequest, ctx: HandlerContext) {
    const site = await this.em().transactional((em) =>
      sites.updateSite(em, principalOf(ctx.values), req.id, {
        etag: req.etag,
        domain: req.domain,
        name: req.name,
        timezone: req.timezone,
        currency: req.currency,
        industry: req.industry,
        settings: req.settings ? map.siteSettingsFromProto(req.settings) : undefined,
      }),
    );
    return create(pb.UpdateSiteResponseSchema, { site: map.siteToProto(site) });
  }

  async deleteSite(req: pb.DeleteSiteRequest, ctx: HandlerContext) {
    await this.em().transactional((em) => sites.deleteSite(em, principalOf(ctx.values), req.id, req.etag));
    return create(pb.DeleteSiteResponseSchema);
  }

  async createGoal(req: pb.CreateGoalRequest, ctx: HandlerContext) {
    const principal = principalOf(ctx.values);
    return this.idempotency.run(
      { ctx, principal, requestSchema: pb.CreateGoalRequestSchema, request: req, responseSchema: pb.CreateGoalResponseSchema },
      async (em) => {
        const goal = await goals.createGoal(em, principal, req.siteId, {
          name: req.name,
          type: map.goalTypes.name(req.type),
          matchType: map.goalMatchTypes.name(req.matchType),
          value: req.value,
          propertyKey: req.propertyKey,
          propertyValue: req.propertyValue,
          valueNumeric: req.valueNumeric,
        });
        return create(pb.CreateGoalResponseSchema, { goal: map.goalToProto(goal) });
      },
    );
  }

  async getGoal(req: pb.GetGoalRequest, ctx: HandlerContext) {
    const goal = await goals.loadGoal(this.em(), principalOf(ctx.values), req.siteId, req.id);
    return create(pb.GetGoalResponseSchema, { goal: map.goalToProto(goal) });
  }

  async listGoals(req: pb.ListGoalsRequest, ctx: HandlerContext) {
    const page = await goals.listGoals(this.em(), principalOf(ctx.values), req.siteId, req);
    return create(pb.ListGoalsResponseSchema, { goals: page.items.map(map.goalToProto), nextPageToken: page.nextPageToken });
  }

  async updateGoal(req: pb.UpdateGoalRequest, ctx: HandlerContext) {
    const goal = await this.em().transactional((em) =>
      goals.updateGoal(em, principalOf(ctx.values), req.siteId, req.id, {
        etag: req.etag,
        name: req.name,
        matchType: req.matchType === undefined ? undefined : map.goalMatchTypes.name(req.matchType) ?? "equals",
        value: req.value,
        propertyKey: req.propertyKey,
        propertyValue: req.propertyValue,
        valueNumeric: req.valueNumeric,
      }),
    );
    return create(pb.UpdateGoalResponseSchema, { goal: map.goalToProto(goal) });
  }

  async deleteGoal(req: pb.DeleteGoalRequest, ctx: HandlerContext) {
    await this.em().transactional((em) => goals.deleteGoal(em, principalOf(ctx.values), req.siteId, req.id, req.etag));
    return create(pb.DeleteGoalResponseSchema);
  }

  async createApiKey(req: pb.CreateApiKeyRequest, ctx: HandlerContext) {
    const principal = principalOf(ctx.values);
    return this.idempotency.run(
      {
        ctx,
        principal,
        requestSchema: pb.CreateApiKeyRequestSchema,
        request: req,
        responseSchema: pb.CreateApiKeyResponseSchema,
        // The secret is never stored, not even for replay.
        stored: (response) => ({ ...response, secret: "" }),
      },
      async (em) => {
        const { key, secret } = await keys.createApiKey(em, principal, principal.organisationId, {
          displayName: req.displayName,
          role: map.roles.name(req.role),
          siteIds: req.siteIds,
        });
        return create(pb.CreateApiKeyResponseSchema, { apiKey: map.apiKeyToProto(key), secret });
      },
    );
  }

  async getApiKey(req: pb.GetApiKeyRequest, ctx: HandlerContext) {
    const key = await keys.loadApiKey(this.em(), principalOf(ctx.values), req.id);
    return create(pb.GetApiKeyResponseSchema, { apiKey: map.apiKeyToProto(key) });
  }

  async listApiKeys(req: pb.ListApiKeysRequest, ctx: HandlerContext) {
    const page = await keys.listApiKeys(this.em(), principalOf(ctx.values), req);
    return create(pb.ListApiKeysResponseSchema, { apiKeys: page.items.map(map.apiKeyToProto), nextPageToken: page.nextPageToken });
  }

  async revokeApiKey(req: pb.RevokeApiKeyRequest, ctx: HandlerContext) {
    const key = await this.em().transactional((em) => keys.revokeApiKey(em, principalOf(ctx.values), req.id, req.etag));
    this.deps.onKeyRevoked?.();
    return create(pb.RevokeApiKeyResponseSchema, { apiKey: map.apiKeyToProto(key) });
  }

  async getMyPermissions(_req: pb.GetMyPermissionsRequest, ctx: HandlerContext) {
    const principal = principalOf(ctx.values);
    return create(pb.GetMyPermissionsResponseSchema, {
      permissions: create(PermissionsSchema, {
        keyId: principal.keyId,
        organisationId: principal.organisationId,
        role: map.roles.value(principal.role),
        siteIds: [...principal.siteIds],
        permissions: permissionsOf(principal.role),
      }),
    });
  }

  async createMetricDefinition(req: pb.CreateMetricDefinitionRequest, ctx: HandlerContext) {
    const principal = principalOf(ctx.values);
    return this.idempotency.run(
      { ctx, principal, requestSchema: pb.CreateMetricDefinitionRequestSchema, request: req, responseSchema: pb.CreateMetricDefinitionResponseSchema },
      async (em) => {
        const definition = await metrics.createMetricDefinition(em, principal, {
          name: req.name,
          description: req.description,
          type: map.metricTypes.name(req.type),
          unit: req.unit,
          tags: req.tags,
          aggregationDefault: map.aggregations.name(req.aggregationDefault),
          retentionDays: req.retentionDays,
          schema: req.schema,
          formula: req.formula,
        });
        return create(pb.CreateMetricDefinitionResponseSchema, { metricDefinition: map.metricDefinitionToProto(definition) });
      },
    );
  }

  async getMetricDefinition(req: pb.GetMetricDefinitionRequest, ctx: HandlerContext) {
    const definition = await metrics.loadMetricDefinition(this.em(), principalOf(ctx.values), req.id);
    return create(pb.GetMetricDefinitionResponseSchema, { metricDefinition: map.metricDefinitionToProto(definition) });
  }

  async listMetricDefinitions(req: pb.ListMetricDefinitionsRequest, ctx: HandlerContext) {
    const page = await metrics.listMetricDefinitions(this.em(), principalOf(ctx.values), req);
    return create(pb.ListMetricDefinitionsResponseSchema, { metricDefinitions: page.items.map(map.metricDefinitionToProto), nextPageToken: page.nextPageToken });
  }

  async updateMetricDefinition(req: pb.UpdateMetricDefinitionRequest, ctx: HandlerContext) {
    const definition = await this.em().transactional((em) =>
      metrics.updateMetricDefinition(em, principalOf(ctx.values), req.id, {
        etag: req.etag,
        description: req.description,
        unit: req.unit,
        tags: req.updateTags ? req.tags : undefined,
        aggregationDefault: req.aggregationDefault === undefined ? undefined : map.aggregations.name(req.aggregationDefault),
        retentionDays: req.retentionDays,
        schema: req.schema,
        formula: req.formula,
      }),
    );
    return create(pb.UpdateMetricDefinitionResponseSchema, { metricDefinition: map.metricDefinitionToProto(definition) });
  }

  async deleteMetricDefinition(req: pb.DeleteMetricDefinitionRequest, ctx: HandlerContext) {
    await this.em().transactional((em) => metrics.deleteMetricDefinition(em, principalOf(ctx.values), req.id, req.etag));
    return create(pb.DeleteMetricDefinitionResponseSchema);
  }

  async getSettings(_req: pb.GetSettingsRequest, ctx: HandlerContext) {
    const principal = principalOf(ctx.values);
    const { values, row } = await settings.getSettings(this.em(), principal.organisationId);
    return create(pb.GetSettingsResponseSchema, { settings: map.settingsToProto(principal.organisationId, values, row) });
  }

  async updateSettings(req: pb.UpdateSettingsRequest, ctx: HandlerContext) {
    const principal = principalOf(ctx.values);
    const { values, row } = await this.em().transactional((em) =>
      settings.updateSettings(em, principal, {
        etag: req.etag,
        retentionDays: req.defaultRetentionDays,
        metricRetentionDays: req.defaultMetricRetentionDays,
        maxCardinality: req.maxCardinality,
        ingestRateLimit: req.ingestRateLimit,
        allowedConnectors: req.updateAllowedConnectors ? req.allowedConnectors : undefined,
      }),
    );
    return create(pb.UpdateSettingsResponseSchema, { settings: map.settingsToProto(principal.organisationId, values, row) });
  }

  async getQuotas(_req: pb.GetQuotasRequest, ctx: HandlerContext) {
    const principal = principalOf(ctx.values);
    const { values, row } = await settings.getQuotas(this.em(), principal.organisationId);
    const used = await this.deps.usage.eventsThisMonth(principal.organisationId);
    return create(pb.GetQuotasResponseSchema, { quotas: map.quotasToProto(principal.organisationId, values, row, used) });
  }

  async updateQuotas(req: pb.UpdateQuotasRequest, ctx: HandlerContext) {
    const principal = principalOf(ctx.values);
    const { values, row } = await this.em().transactional((em) =>
      settings.updateQuotas(em, principal, {
        etag: req.etag,
        eventsPerMonth: req.eventsPerMonth === undefined ? undefined : Number(req.eventsPerMonth),
        queriesPerMinute: req.queriesPerMinute,
        maxConcurrentStreams: req.maxConcurrentStreams,
        maxSites: req.maxSites,
      }),
    );
    const used = await this.deps.usage.eventsThisMonth(principal.organisationId);
    return create(pb.UpdateQuotasResponseSchema, { quotas: map.quotasToProto(principal.organisationId, values, row, used) });
  }

  async listAuditEntries(req: pb.ListAuditEntriesRequest, ctx: HandlerContext) {
    const page = await orgs.listAuditEntries(this.em(), principalOf(ctx.values), {
      pageSize: req.pageSize,
      pageToken: req.pageToken,
      resource: req.resource,
      action: req.action,
      actorKeyId: req.actorKeyId,
      startTime: req.startTime ? timestampDate(req.startTime) : undefined,
      endTime: req.endTime ? timestampDate(req.endTime) : undefined,
    });
    return create(pb.ListAuditEntriesResponseSchema, { auditEntries: page.items.map(map.auditEntryToProto), nextPageToken: page.nextPageToken });
  }

  async getRollupPolicy(req: pb.GetRollupPolicyRequest, ctx: HandlerContext) {
    const policy = await rollups.getRollupPolicy(this.em(), await sqlPool(this.deps.orm), principalOf(ctx.values), req.siteId);
    return create(pb.GetRollupPolicyResponseSchema, { policy: map.rollupPolicyToProto(policy) });
  }

  async updateRollupPolicy(req: pb.UpdateRollupPolicyRequest, ctx: HandlerContext) {
    const principal = principalOf(ctx.values);
    await this.em().transactional((em) => rollups.updateRollupPolicy(em, principal, req.siteId, { etag: req.etag, enabled: req.enabled, rawRetentionDays: req.rawRetentionDays }));
    const policy = await rollups.getRollupPolicy(this.em(), await sqlPool(this.deps.orm), principal, req.siteId);
    return create(pb.UpdateRollupPolicyResponseSchema, { policy: map.rollupPolicyToProto(policy) });
  }

  async runRollup(req: pb.RunRollupRequest, ctx: HandlerContext) {
    const principal = principalOf(ctx.values);
    const site = await loadSite(this.em(), principal, req.siteId);
    const pool = await sqlPool(this.deps.orm);
    // Bounded, so a request never holds a connection for a long backfill; the tick does the rest.
    const result = await rollSite(pool, site.id, site.timezone, Date.now(), 24 * 7);
    const policy = await rollups.getRollupPolicy(this.em(), pool, principal, site.id);
    return create(pb.RunRollupResponseSchema, { hoursRolled: result.hours, daysRolled: result.days, policy: map.rollupPolicyToProto(policy) });
  }

  async listDeadLetters(req: pb.ListDeadLettersRequest, ctx: HandlerContext) {
    const page = await orgs.listDeadLetters(this.em(), principalOf(ctx.values), req.siteId, req);
    return create(pb.ListDeadLettersResponseSchema, { deadLetters: page.items.map(map.deadLetterToProto), nextPageToken: page.nextPageToken });
  }
}
