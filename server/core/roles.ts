// Roles and what each may do. viewer < analyst < admin: each role may do everything the one
// before it may.

export type RoleName = "viewer" | "analyst" | "admin";

export const ROLE_RANK: Record<RoleName, number> = { viewer: 1, analyst: 2, admin: 3 };

/** Every permission, with the least role that holds it. GetMyPermissions lists them. */
export const PERMISSIONS: Record<string, RoleName> = {
  "organisation.read": "viewer",
  "sites.read": "viewer",
  "goals.read": "viewer",
  "metrics.read": "viewer",
  "settings.read": "viewer",
  "reports.read": "viewer",
  "realtime.read": "viewer",
  "exports.read": "viewer",
  "goals.write": "analyst",
  "metrics.write": "analyst",
  "exports.write": "analyst",
  "subscriptions.write": "analyst",
  "dead_letters.read": "analyst",
  "tracking.server_side": "analyst",
  "organisation.write": "admin",
  "sites.write": "admin",
  "keys.read": "admin",
  "keys.write": "admin",
  "settings.write": "admin",
  "quotas.write": "admin",
  "audit.read": "admin",
};

export function roleAllows(role: RoleName, needed: RoleName): boolean {
  return ROLE_RANK[role] >= ROLE_RANK[needed];
}

export function permissionsOf(role: RoleName): string[] {
  return Object.entries(PERMISSIONS)
    .filter(([, needed]) => roleAllows(role, needed))
    .map(([permission]) => permission)
    .sort();
}

/** The caller, once its API key is checked. Travels in Connect context values, never globally. */
export interface Principal {
  keyId: string;
  organisationId: string;
  role: RoleName;
  /** Sites the key may reach; empty means every site of the organisation. */
  siteIds: readonly string[];
  /** For audit entries: the key's name and prefix. */
  actor: string;
}

export function canReachSite(principal: Principal, siteId: string): boolean {
  return principal.siteIds.length === 0 || principal.siteIds.includes(siteId);
}
