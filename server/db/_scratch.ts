import { MikroORM } from "@mikro-orm/postgresql";
import { entities } from "./entities/index.js";
const orm = await MikroORM.init({ clientUrl: "postgres://postgres@127.0.0.1:5432/postgres", entities, ensureDatabase: false, debug: false });
console.log(await orm.schema.getCreateSchemaSQL());
await orm.close();
