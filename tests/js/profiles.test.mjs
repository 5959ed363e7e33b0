// The web player's artist names (frontend/lib/profiles.js) against docs/protocol-vectors.json (written by the Python
// reference): the same name rule, and a name is shown only when the artist's own signature verifies.
// Run: node --test tests/js/
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { Wallet } from "ethers";

import { ArtistNames, PROFILE_TYPES, nameProblem, verifiedName } from "../../frontend/lib/profiles.js";
import { makeDomain } from "../../frontend/lib/protocol.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const vectors = JSON.parse(fs.readFileSync(path.join(ROOT, "docs", "protocol-vectors.json"), "utf8"));
const domain = makeDomain(vectors.domain);

test("the profile vectors verify, with the Python reference's signatures byte for byte", async () => {
  assert.ok(vectors.profiles.length >= 2);
  for (const v of vectors.profiles) {
    const profile = { ...v.message, signature: v.signature };
    assert.equal(verifiedName(domain, v.signer, profile), v.message.name);
    const signature = await new Wallet(v.privateKey).signTypedData(domain, PROFILE_TYPES, v.message);
    assert.equal(signature, v.signature);
  }
});

test("a profile altered by the relay, of another address, or from another domain shows no name", () => {
  const v = vectors.profiles[0];
  const profile = { ...v.message, signature: v.signature };
  assert.equal(verifiedName(domain, v.signer, { ...profile, name: "Mallory" }), null);
  assert.equal(verifiedName(domain, v.signer, { ...profile, issuedAt: v.message.issuedAt + 1 }), null);
  assert.equal(verifiedName(domain, "0x" + "11".repeat(20), profile), null);
  assert.equal(verifiedName(makeDomain({ ...vectors.domain, chainId: 1 }), v.signer, profile), null);
  assert.equal(verifiedName(domain, v.signer, { ...profile, signature: "0x1234" }), null);
});

test("the name rule matches the relay's", () => {
  for (const ok of ["Ada Lovelace", "Zoë", "坂本龍一", "🎵 x 🎵", "a".repeat(64), "🎵".repeat(64)]) assert.equal(nameProblem(ok), null, ok);
  for (const bad of ["", "a".repeat(65), "Ada\tL", "Ada\x7f", "\u202eAda", "Ad\u200da", "Ada\u2029", "Ada\u3000L", "Ada\u00a0L", " Ada", "Ada ", "Zoe\u0308", "\ue000", "\ud800"]) {
    assert.notEqual(nameProblem(bad), null, JSON.stringify(bad));
  }
});

test("ArtistNames learns only verified names, and forgets one whose profile stops verifying", async () => {
  const v = vectors.profiles[0];
  let served = { ...v.message, signature: v.signature };
  const relay = { profile: async () => served };
  const names = new ArtistNames();
  const tracks = [{ owner: v.signer, artistName: "whatever the catalog says" }];
  assert.equal(await names.learn(relay, domain, tracks), true);
  assert.equal(names.nameOf(v.signer), v.message.name);
  served = { ...served, name: "Mallory" };
  tracks[0].artistName = "Mallory";
  assert.equal(await names.learn(relay, domain, tracks), true);
  assert.equal(names.nameOf(v.signer), null);
});
