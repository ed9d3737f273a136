export * from "./ua.js";
export * from "./bot.js";
export * from "./geo.js";
export * from "./referrer.js";
export * from "./campaign.js";
export * from "./visitor.js";
export * from "./sanitize.js";
