// The caller's organisation, the audit log and dead letters: the organisation-wide reads.
import type { EntityManager } from "@mikro-orm/postgresql";
import { AuditEntry, DeadLetter, Organisation } from "../../db/entities/index.js";
import { NotFoundError } from "../errors.js";
import type { Principal } from "../roles.js";
import { checkEtag, flushChecked, loadSite } from "./access.js";
import { recordAudit, snapshot } from "./audit.js";
import { listPage, type Page } from "./paging.js";
import { optionalText, requireText, requireUuid } from "./validate.js";

export async function loadOrganisation(em: EntityManager, principal: Principal, id: string): Promise<Organisation> {
  const orgId = id === "" ? principal.organisationId : requireUuid("id", id);
  if (orgId !== principal.organisationId) throw new NotFoundError(`organisation ${orgId}`);
  const organisation = await em.findOne(Organisation, { id: orgId });
  if (!organisation) throw new NotFoundError(`organisation ${orgId}`);
  return organisation;
}

export async function updateOrganisation(em: EntityManager, principal: Principal, id: string, input: { etag: string; name?: string }): Promise<Organisation> {
  const organisation = await loadOrganisation(em, principal, id);
  const resource = `organisations/${organisation.id}`;
  checkEtag(resource, organisation, input.etag);
  const before = snapshot(organisation);
  if (input.name !== undefined) organisation.name = requireText("name", input.name, 200);
  recordAudit(em, principal, { action: "organisation.update", resource, before, after: snapshot(organisation) });
  await flushChecked(em, resource);
  return organisation;
}

export interface AuditQuery {
  pageSize: number;
  pageToken: string;
  resource: string;
  action: string;
  actorKeyId: string;
  startTime?: Date;
  endTime?: Date;
}

export async function listAuditEntries(em: EntityManager, principal: Principal, query: AuditQuery): Promise<Page<AuditEntry>> {
  const where: Record<string, unknown> = { organisationId: principal.organisationId };
  const resource = optionalText("resource", query.resource, 500);
  if (resource) where.$or = [{ resource }, { resource: { $like: `${resource.replace(/[\\%_]/g, "\\$&")}/%` } }];
  const action = optionalText("action", query.action, 100);
  if (action) where.action = action;
  if (query.actorKeyId) where.actorKeyId = requireUuid("actor_key_id", query.actorKeyId);
  const createdAt: Record<string, Date> = {};
  if (query.startTime) createdAt.$gte = query.startTime;
  if (query.endTime) createdAt.$lt = query.endTime;
  if (Object.keys(createdAt).length > 0) where.createdAt = createdAt;
  return listPage(em, AuditEntry, where, query, true);
}

export async function listDeadLetters(em: EntityManager, principal: Principal, siteId: string, request: { pageSize: number; pageToken: string }): Promise<Page<DeadLetter>> {
  const site = await loadSite(em, principal, siteId);
  return listPage(em, DeadLetter, { siteId: site.id }, request, true);
}
