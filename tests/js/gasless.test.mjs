// The web player's gas-free typed data (frontend/lib/gasless.js) against the test vectors in docs/PROTOCOL.md §14.3,
// which the Python reference writes and the contract checks: same types, same digests, and the JSON body the
// relay takes (numbers for sessionExpiry and period, decimal strings for every other integer). Run: node --test tests/js/
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import * as G from "../../frontend/lib/gasless.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const doc = fs.readFileSync(path.join(ROOT, "docs", "PROTOCOL.md"), "utf8");
const block = doc.split("<!-- gasless-vectors:begin -->")[1].split("<!-- gasless-vectors:end -->")[0];
const vectors = JSON.parse(block.slice(block.indexOf("{"), block.lastIndexOf("}") + 1));
const TYPES = { OpenChannel: G.OPEN_TYPES, TopUpChannel: G.TOPUP_TYPES, CloseChannel: G.CLOSE_AUTH_TYPES, PayoutSchedule: G.SCHEDULE_TYPES };

test("every gas-free vector's digest", () => {
  const domain = G.gaslessDomain(vectors.domain.chainId, vectors.domain.verifyingContract);
  assert.equal(vectors.vectors.length, 4);
  for (const v of vectors.vectors) {
    assert.equal(G.authDigest(domain, TYPES[v.primaryType], v.message), v.digest, v.description);
  }
});

test("authJson: numbers where the relay takes numbers, decimal strings elsewhere", () => {
  const open = vectors.vectors.find((v) => v.primaryType === "OpenChannel").message;
  const body = G.authJson({ ...open, amount: BigInt(open.amount), nonce: (1n << 255n) + 7n, sessionExpiry: BigInt(open.sessionExpiry) });
  assert.equal(body.sessionExpiry, 1900000000);
  assert.equal(body.amount, "10000000");
  assert.equal(body.nonce, ((1n << 255n) + 7n).toString());
  assert.equal(body.salt, open.salt);
  const schedule = G.authJson({ enabled: false, period: 3600n, threshold: 0n });
  assert.deepEqual(schedule, { enabled: false, period: 3600, threshold: "0" });
});

test("parseQuote refuses a fee the page cannot show", () => {
  const good = { fee: "10000", payoutFee: "1000", submitter: "0x70997970c51812dc3a010c7d01b50e0d17dc79c8" };
  assert.equal(G.parseQuote(good).fee, 10000n);
  for (const fee of ["-1", "1e5", 10000, "0x10", "", "1".repeat(31)]) {
    assert.throws(() => G.parseQuote({ ...good, fee }), /malformed/);
  }
});
