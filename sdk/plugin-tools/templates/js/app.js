// `__NAME__`: a Switchyard plugin.
// `__NAME__.hello` {"name": "Ada"} -> {"greeting": "Hello, Ada!", "count": 1},
// where `count` is kept in the host's key-value store across swaps.
// Throwing {code, message} answers the client with that code.
import kv from "switchyard:plugin/kv@0.2.0";

export const handler = {
  manifest() {
    return { name: "__NAME__", version: "0.1.0", description: "", claims: ["__NAME__.*"] };
  },

  handle(msg) {
    if (msg.type !== "__NAME__.hello") throw { code: "UNKNOWN_ACTION", message: `no action ${msg.type}` };
    let name;
    try {
      name = JSON.parse(msg.data).name;
    } catch (e) {
      throw { code: "INVALID_DATA", message: `data is not JSON: ${e}` };
    }
    if (typeof name !== "string") throw { code: "INVALID_DATA", message: 'expected {"name": string}' };
    const count = Number(kv.get("count") ?? 0) + 1;
    kv.set("count", JSON.stringify(count));
    return JSON.stringify({ greeting: `Hello, ${name}!`, count });
  },
};
