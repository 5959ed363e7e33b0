// Artists' names: a profile the artist signs, EIP-712 ArtistProfile(address artist, string name, uint64 issuedAt)
// under the relay's domain (docs/PROTOCOL.md §3.6). The relay stores and serves profiles; this model verifies each
// one itself (ethers' verifyTypedData) before a name is shown, so a relay can withhold a name but never make one
// up. A model: no DOM. Runs in the browser and in Node (tests/js/).
import { getAddress, verifyTypedData } from "ethers";

export const MAX_NAME_CHARS = 64;
export const PROFILE_TYPES = {
  ArtistProfile: [
    { name: "artist", type: "address" },
    { name: "name", type: "string" },
    { name: "issuedAt", type: "uint64" },
  ],
};

// Python's str.isprintable, which the relay applies: no Cc, Cf, Cs, Co, Cn, Zl, Zp, and no Zs but the space.
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}]|(?! )\p{Zs}/u;

/** Why `name` is not an acceptable artist name (the relay's rule, protocol/profile.py), or null if it is. */
export function nameProblem(name) {
  if (typeof name !== "string") return "a name is text";
  const chars = [...name].length; // code points, as Python counts
  if (chars < 1 || chars > MAX_NAME_CHARS) return `a name is 1 to ${MAX_NAME_CHARS} characters, this one has ${chars}`;
  if (UNPRINTABLE.test(name)) return "a name holds printable text only";
  if (name.startsWith(" ") || name.endsWith(" ")) return "a name does not start or end with a space";
  if (name.normalize("NFC") !== name) return "a name is in Unicode NFC";
  return null;
}

/** The name in `profile` (the relay's answer) if it is `address`'s own, signed in `domain`; null otherwise. */
export function verifiedName(domain, address, profile) {
  try {
    const artist = getAddress(profile.artist);
    if (artist !== getAddress(address) || nameProblem(profile.name) !== null) return null;
    const issuedAt = BigInt(profile.issuedAt);
    if (issuedAt < 0n || issuedAt >= 1n << 64n) return null;
    const message = { artist, name: profile.name, issuedAt };
    return verifyTypedData(domain, PROFILE_TYPES, message, profile.signature) === artist ? profile.name : null;
  } catch {
    return null; // malformed: not shown
  }
}

/** The names this page has verified, by address: what artistName() (lib/ui.js) shows. */
export class ArtistNames {
  constructor() {
    this.names = new Map(); // checksummed address -> verified name
    this.version = 0; // bumped whenever a shown name changes: views key their redraws on it
  }

  nameOf(address) {
    try {
      return this.names.get(getAddress(address)) ?? null;
    } catch {
      return null;
    }
  }

  /**
   * Verify the profiles of the tracks' owners whose catalog entry names them (and whose name we have not verified
   * yet); resolves to true if a shown name changed. An unverifiable profile removes the name.
   */
  async learn(relay, domain, tracks) {
    const owners = new Set();
    for (const t of tracks ?? []) {
      if (t.artistName != null && t.artistName !== this.nameOf(t.owner)) owners.add(getAddress(t.owner));
    }
    let changed = false;
    await Promise.all([...owners].map(async (owner) => {
      const profile = await relay.profile(owner).catch(() => null);
      const name = profile ? verifiedName(domain, owner, profile) : null;
      if (name !== this.nameOf(owner)) {
        changed = true;
        this.version += 1;
        if (name === null) this.names.delete(owner);
        else this.names.set(owner, name);
      }
    }));
    return changed;
  }

  /**
   * Sign `name` as `address`'s profile with `signer` (one eth_signTypedData_v4) and store it at the relay;
   * resolves to the verified name. Dated by the relay's clock (`now`, unix seconds) and after the stored profile.
   */
  async setName(relay, domain, signer, address, name, now) {
    name = String(name).normalize("NFC");
    const problem = nameProblem(name);
    if (problem) throw Object.assign(new Error(problem), { code: "bad_name" });
    const artist = getAddress(address);
    const current = await relay.profile(artist).catch(() => null);
    let issuedAt = BigInt(Math.floor(now));
    if (current && BigInt(current.issuedAt) >= issuedAt) issuedAt = BigInt(current.issuedAt) + 1n;
    const message = { artist, name, issuedAt };
    const signature = await signer.signTypedData(domain, PROFILE_TYPES, message);
    const stored = await relay.setProfile(artist, { name, issuedAt: Number(issuedAt), signature });
    const verified = verifiedName(domain, artist, stored);
    if (verified === null) throw Object.assign(new Error("the relay answered a profile that does not verify"), { code: "untrusted_state" });
    this.names.set(artist, verified);
    this.version += 1;
    return verified;
  }
}

/** The page's one registry of verified names. */
export const artistNames = new ArtistNames();
