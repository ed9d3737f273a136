// API keys of an organisation. The secret is generated here, returned once and stored hashed.
import type { EntityManager } from "@mikro-orm/postgresql";
import { ApiKey, Site } from "../../db/entities/index.js";
import { generateApiKeySecret } from "../api-keys.js";
import { InvalidArgumentError, NotFoundError, PermissionDeniedError } from "../errors.js";
import type { Principal, RoleName } from "../roles.js";
import { roleAllows } from "../roles.js";
import { checkEtag, flushChecked } from "./access.js";
import { recordAudit, snapshot } from "./audit.js";
import { listPage, type Page } from "./paging.js";
import { requireText, requireUuid } from "./validate.js";

export interface CreateApiKeyInput {
  displayName: string;
  role: RoleName | undefined;
  siteIds: string[];
}

const AUDIT_OMIT = ["hash"];

export async function createApiKey(em: EntityManager, principal: Principal | null, organisationId: string, input: CreateApiKeyInput): Promise<{ key: ApiKey; secret: string }> {
  const name = requireText("display_name", input.displayName, 200);
  if (!input.role) throw new InvalidArgumentError("role", "is required: ROLE_VIEWER, ROLE_ANALYST or ROLE_ADMIN");
  if (principal && !roleAllows(principal.role, input.role)) throw new PermissionDeniedError("a key cannot create a key with a higher role than its own");
  const siteIds = [...new Set(input.siteIds.map((id, i) => requireUuid(`site_ids[${i}]`, id)))];
  if (principal && principal.siteIds.length > 0) {
    // A key limited to some sites may only hand out keys limited to those same sites.
    if (siteIds.length === 0 || siteIds.some((id) => !principal.siteIds.includes(id))) {
      throw new PermissionDeniedError("a key limited to some sites can only create keys limited to those sites");
    }
  }
  if (siteIds.length > 0) {
    const found = await em.count(Site, { id: { $in: siteIds }, organisationId, deletedAt: null });
    if (found !== siteIds.length) throw new InvalidArgumentError("site_ids", "names a site that does not exist");
  }
  const { secret, hash, prefix } = generateApiKeySecret();
  const key = em.create(ApiKey, { organisationId, name, prefix, hash, role: input.role, siteIds });
  recordAudit(em, principal, { action: "api_key.create", resource: `api-keys/${key.id}`, after: snapshot(key, AUDIT_OMIT) }, organisationId);
  await em.flush();
  return { key, secret };
}

export async function loadApiKey(em: EntityManager, principal: Principal, id: string): Promise<ApiKey> {
  const keyId = requireUuid("id", id);
  const key = await em.findOne(ApiKey, { id: keyId, organisationId: principal.organisationId });
  if (!key) throw new NotFoundError(`API key ${keyId}`);
  return key;
}

export async function listApiKeys(em: EntityManager, principal: Principal, request: { pageSize: number; pageToken: string; showRevoked: boolean }): Promise<Page<ApiKey>> {
  const where = request.showRevoked ? { organisationId: principal.organisationId } : { organisationId: principal.organisationId, revokedAt: null };
  return listPage(em, ApiKey, where, request);
}

export async function revokeApiKey(em: EntityManager, principal: Principal, id: string, etag: string): Promise<ApiKey> {
  const key = await loadApiKey(em, principal, id);
  const resource = `api-keys/${key.id}`;
  checkEtag(resource, key, etag);
  if (key.revokedAt) return key;
  const before = snapshot(key, AUDIT_OMIT);
  key.revokedAt = new Date();
  recordAudit(em, principal, { action: "api_key.revoke", resource, before, after: snapshot(key, AUDIT_OMIT) });
  await flushChecked(em, resource);
  return key;
}
