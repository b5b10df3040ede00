// `js-text`: answers `text.upper`, `text.reverse` and `text.count` for {"text": str},
// keeping a running total of processed characters in the host's kv store.
import kv from "switchyard:plugin/kv@0.2.0";
import log from "switchyard:plugin/log@0.2.0";

// A WIT `result` error is thrown: the thrown object is the `failure` record.
class Failure {
  constructor(code, message) {
    this.code = code;
    this.message = message;
  }
}

const actions = {
  "text.upper": (text) => text.toUpperCase(),
  "text.reverse": (text) => [...text].reverse().join(""),
  "text.count": (text) => ({ chars: [...text].length, words: text.split(/\s+/).filter(Boolean).length }),
};

export const handler = {
  manifest() {
    return {
      name: "js-text",
      version: "0.1.0",
      description: "Upper-cases, reverses and counts text (JavaScript)",
      claims: ["text.*"],
    };
  },

  handle(msg) {
    const action = actions[msg.type];
    if (!action) throw new Failure("UNKNOWN_ACTION", `no such action: ${msg.type}`);

    let data;
    try {
      data = JSON.parse(msg.data);
    } catch (e) {
      throw new Failure("INVALID_DATA", `data is not JSON: ${e}`);
    }
    if (typeof data?.text !== "string") throw new Failure("INVALID_DATA", 'expected {"text": string}');

    const result = action(data.text);
    const total = Number(kv.get("total_chars") ?? 0) + [...data.text].length;
    kv.set("total_chars", JSON.stringify(total)); // a quota failure is thrown as a failure record
    log.log("debug", `${msg.type}: ${data.text.length} chars, ${total} in total`);
    return JSON.stringify({ result, total_chars: total });
  },
};
