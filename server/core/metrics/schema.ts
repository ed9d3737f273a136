// Point metadata against a metric definition's `schema`. Beacon checks the part of JSON Schema
// that metadata schemas use in practice: `type` (one or a list), `properties`, `required`,
// `additionalProperties: false` or a schema, `enum`, `const`, `minimum`/`maximum`,
// `minLength`/`maxLength`/`pattern` and `items`. Other keywords are ignored (accepted), so a
// richer schema never rejects what its checked part allows.

type Schema = Record<string, unknown>;

function typeOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

function matchesType(value: unknown, type: unknown): boolean {
  const actual = typeOf(value);
  const allowed = Array.isArray(type) ? type : [type];
  return allowed.some((t) => t === actual || (t === "number" && actual === "integer"));
}

function isSchema(value: unknown): value is Schema {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Where a value breaks its schema (`metadata.plan`) and how. */
export interface SchemaViolation {
  path: string;
  problem: string;
}

const v = (path: string, problem: string): SchemaViolation => ({ path, problem });

/** The first way `value` breaks `schema`, or undefined when it conforms. */
export function schemaViolation(schema: Schema, value: unknown, path = "metadata"): SchemaViolation | undefined {
  if (schema.type !== undefined && !matchesType(value, schema.type)) {
    return v(path, `must be of type ${Array.isArray(schema.type) ? schema.type.join(" or ") : String(schema.type)}, got ${typeOf(value)}`);
  }
  if (Array.isArray(schema.enum) && !schema.enum.some((allowed) => JSON.stringify(allowed) === JSON.stringify(value))) {
    return v(path, `must be one of ${schema.enum.map((allowed) => JSON.stringify(allowed)).join(", ")}`);
  }
  if ("const" in schema && JSON.stringify(schema.const) !== JSON.stringify(value)) return v(path, `must be ${JSON.stringify(schema.const)}`);
  if (typeof value === "number") {
    if (typeof schema.minimum === "number" && value < schema.minimum) return v(path, `must be at least ${schema.minimum}`);
    if (typeof schema.maximum === "number" && value > schema.maximum) return v(path, `must be at most ${schema.maximum}`);
  }
  if (typeof value === "string") {
    if (typeof schema.minLength === "number" && value.length < schema.minLength) return v(path, `must be at least ${schema.minLength} characters`);
    if (typeof schema.maxLength === "number" && value.length > schema.maxLength) return v(path, `must be at most ${schema.maxLength} characters`);
    if (typeof schema.pattern === "string") {
      let pattern: RegExp | undefined;
      try {
        pattern = new RegExp(schema.pattern, "u");
      } catch {
        pattern = undefined; // an unusable pattern in a definition checks nothing
      }
      if (pattern && !pattern.test(value)) return v(path, `must match ${schema.pattern}`);
    }
  }
  if (Array.isArray(value) && isSchema(schema.items)) {
    for (let i = 0; i < value.length; i++) {
      const problem = schemaViolation(schema.items, value[i], `${path}[${i}]`);
      if (problem) return problem;
    }
  }
  if (isSchema(value)) {
    const properties = isSchema(schema.properties) ? schema.properties : {};
    if (Array.isArray(schema.required)) {
      for (const key of schema.required) {
        if (typeof key === "string" && !(key in value)) return v(`${path}.${key}`, "is required");
      }
    }
    for (const [key, item] of Object.entries(value)) {
      const property = properties[key];
      if (isSchema(property)) {
        const problem = schemaViolation(property, item, `${path}.${key}`);
        if (problem) return problem;
      } else if (schema.additionalProperties === false) {
        return v(`${path}.${key}`, "is not an allowed property");
      } else if (isSchema(schema.additionalProperties)) {
        const problem = schemaViolation(schema.additionalProperties, item, `${path}.${key}`);
        if (problem) return problem;
      }
    }
  }
  return undefined;
}
