// Conversion goals (000's "create goal"): destination goals match page paths, event goals match
// custom event names. They are definitions only; reports apply them to stored events.
import type { EntityManager } from "@mikro-orm/postgresql";
import { UniqueConstraintViolationException } from "@mikro-orm/core";
import { Goal, type GoalMatchType, type GoalType } from "../../db/entities/index.js";
import { AlreadyExistsError, InvalidArgumentError, NotFoundError } from "../errors.js";
import type { Principal } from "../roles.js";
import { checkEtag, flushChecked, loadSite } from "./access.js";
import { recordAudit, snapshot } from "./audit.js";
import { listPage, type Page } from "./paging.js";
import { optionalText, requireRegex, requireText, requireUuid } from "./validate.js";

export interface CreateGoalInput {
  name: string;
  type: GoalType | undefined;
  matchType: GoalMatchType | undefined;
  value: string;
  propertyKey: string;
  propertyValue: string;
  valueNumeric: number | undefined;
}

export interface UpdateGoalInput {
  etag: string;
  name?: string;
  matchType?: GoalMatchType;
  value?: string;
  propertyKey?: string;
  propertyValue?: string;
  valueNumeric?: number;
}

function checkValue(goal: { type: GoalType; matchType: GoalMatchType }, value: string): string {
  const checked = requireText("value", value, 2000);
  if (goal.type === "destination") {
    if (goal.matchType === "regex") return requireRegex("value", checked);
    if (!checked.startsWith("/")) throw new InvalidArgumentError("value", `a destination goal's value is a page path starting with "/", got "${checked}"`);
  }
  return checked;
}

function checkNumeric(value: number | undefined): number | null {
  if (value === undefined) return null;
  if (!Number.isFinite(value) || value < 0) throw new InvalidArgumentError("value_numeric", "must be a finite number of at least 0");
  return value;
}

async function ensureUniqueName(em: EntityManager, siteId: string, name: string, exceptId?: string): Promise<void> {
  const clash = await em.findOne(Goal, { siteId, name, ...(exceptId ? { id: { $ne: exceptId } } : {}) });
  if (clash) throw new AlreadyExistsError("name", `the site already has a goal named "${name}"`);
}

export async function createGoal(em: EntityManager, principal: Principal, siteId: string, input: CreateGoalInput): Promise<Goal> {
  const site = await loadSite(em, principal, siteId);
  if (!input.type) throw new InvalidArgumentError("type", "is required: GOAL_TYPE_DESTINATION or GOAL_TYPE_EVENT");
  const name = requireText("name", input.name, 200);
  const matchType = input.matchType ?? "equals";
  if (input.type === "event" && matchType !== "equals") throw new InvalidArgumentError("match_type", "event goals match the event name exactly");
  const value = checkValue({ type: input.type, matchType }, input.value);
  const propertyKey = optionalText("property_key", input.propertyKey, 120);
  const propertyValue = optionalText("property_value", input.propertyValue, 500);
  if (propertyKey !== "" && input.type !== "event") throw new InvalidArgumentError("property_key", "only event goals can match a property");
  if (propertyValue !== "" && propertyKey === "") throw new InvalidArgumentError("property_value", "needs property_key");
  await ensureUniqueName(em, site.id, name);
  const goal = em.create(Goal, {
    siteId: site.id,
    organisationId: site.organisationId,
    name,
    type: input.type,
    matchType,
    value,
    propertyKey: propertyKey || null,
    propertyValue: propertyKey ? propertyValue : null,
    valueNumeric: checkNumeric(input.valueNumeric),
  });
  recordAudit(em, principal, { action: "goal.create", resource: `sites/${site.id}/goals/${goal.id}`, after: snapshot(goal) });
  try {
    await em.flush();
  } catch (err) {
    if (err instanceof UniqueConstraintViolationException) throw new AlreadyExistsError("name", `the site already has a goal named "${name}"`);
    throw err;
  }
  return goal;
}

export async function loadGoal(em: EntityManager, principal: Principal, siteId: string, goalId: string): Promise<Goal> {
  const site = await loadSite(em, principal, siteId);
  const id = requireUuid("id", goalId);
  const goal = await em.findOne(Goal, { siteId: site.id, id });
  if (!goal) throw new NotFoundError(`goal ${id}`);
  return goal;
}

export async function listGoals(em: EntityManager, principal: Principal, siteId: string, request: { pageSize: number; pageToken: string }): Promise<Page<Goal>> {
  const site = await loadSite(em, principal, siteId);
  return listPage(em, Goal, { siteId: site.id }, request);
}

export async function updateGoal(em: EntityManager, principal: Principal, siteId: string, goalId: string, input: UpdateGoalInput): Promise<Goal> {
  const goal = await loadGoal(em, principal, siteId, goalId);
  const resource = `sites/${goal.siteId}/goals/${goal.id}`;
  checkEtag(resource, goal, input.etag);
  const before = snapshot(goal);
  if (input.name !== undefined) {
    goal.name = requireText("name", input.name, 200);
    await ensureUniqueName(em, goal.siteId, goal.name, goal.id);
  }
  if (input.matchType !== undefined) {
    if (goal.type === "event" && input.matchType !== "equals") throw new InvalidArgumentError("match_type", "event goals match the event name exactly");
    goal.matchType = input.matchType;
  }
  if (input.value !== undefined || input.matchType !== undefined) goal.value = checkValue(goal, input.value ?? goal.value);
  if (input.propertyKey !== undefined) {
    const key = optionalText("property_key", input.propertyKey, 120);
    if (key !== "" && goal.type !== "event") throw new InvalidArgumentError("property_key", "only event goals can match a property");
    goal.propertyKey = key || null;
    if (!key) goal.propertyValue = null;
  }
  if (input.propertyValue !== undefined) {
    if (!goal.propertyKey) throw new InvalidArgumentError("property_value", "needs property_key");
    goal.propertyValue = optionalText("property_value", input.propertyValue, 500);
  }
  if (input.valueNumeric !== undefined) goal.valueNumeric = checkNumeric(input.valueNumeric);
  recordAudit(em, principal, { action: "goal.update", resource, before, after: snapshot(goal) });
  await flushChecked(em, resource);
  return goal;
}

export async function deleteGoal(em: EntityManager, principal: Principal, siteId: string, goalId: string, etag: string): Promise<void> {
  const goal = await loadGoal(em, principal, siteId, goalId);
  const resource = `sites/${goal.siteId}/goals/${goal.id}`;
  checkEtag(resource, goal, etag);
  recordAudit(em, principal, { action: "goal.delete", resource, before: snapshot(goal) });
  em.remove(goal);
  await flushChecked(em, resource);
}
