// The ChainStream voucher protocol in JavaScript: a line-for-line port of src/chainstream/protocol/ and
// pricing.Split (docs/PROTOCOL.md). Pure functions over ethers v6; no I/O. Runs in the browser (ethers from the
// import map) and in Node (tests/js/, ethers from node_modules). Amounts are BigInt everywhere.
import {
  AbiCoder,
  Signature,
  SigningKey,
  TypedDataEncoder,
  concat,
  getAddress,
  keccak256,
  recoverAddress,
  toBeHex,
  toUtf8Bytes,
  zeroPadValue,
} from "ethers";

export const ZERO_ADDRESS = "0x0000000000000000000000000000000000000000";
export const ZERO_HASH = "0x" + "00".repeat(32);
export const GENESIS = ZERO_HASH;
export const MAX_AMOUNT = (1n << 96n) - 1n;
export const MAX_MEMO_BYTES = 280;
export const TOTAL_BPS = 10_000n;
export const MAX_FEE_BPS = 5_000;
export const MAX_RECIPIENTS = 16;

export const DOMAIN_NAME = "ChainStream";
export const DOMAIN_VERSION = "1";

/** Receipt kinds (protocol.receipts.Kind). */
export const Kind = Object.freeze({ PLAY: 0, SECONDS: 1, TIP: 2, DOWNLOAD: 3 });
export const KIND_NAMES = ["play", "seconds", "tip", "download"];

export const VOUCHER_TYPE = "Voucher(bytes32 channelId,address[] payees,uint256[] amounts,bytes32 playHash)";
export const CLOSE_TYPE = "Close(bytes32 channelId,bytes32 voucherDigest)";
export const CAPS_TYPE = "Caps(bytes32 channelId,uint256 dailyCap,uint256 sessionCap,uint256 issuedAt)";
export const RECEIPT_TYPE =
  "PlayReceipt(bytes32 prev,uint64 seq,bytes32 target,uint8 kind,uint32 units,uint256 amount," +
  "bytes32 splitHash,bytes32 memoHash)";

/** EIP-712 type definitions as wallets (eth_signTypedData_v4) and ethers expect them. */
export const VOUCHER_TYPES = {
  Voucher: [
    { name: "channelId", type: "bytes32" },
    { name: "payees", type: "address[]" },
    { name: "amounts", type: "uint256[]" },
    { name: "playHash", type: "bytes32" },
  ],
};
export const CLOSE_TYPES = {
  Close: [
    { name: "channelId", type: "bytes32" },
    { name: "voucherDigest", type: "bytes32" },
  ],
};
export const CAPS_TYPES = {
  Caps: [
    { name: "channelId", type: "bytes32" },
    { name: "dailyCap", type: "uint256" },
    { name: "sessionCap", type: "uint256" },
    { name: "issuedAt", type: "uint256" },
  ],
};
export const EIP712_DOMAIN_TYPE = [
  { name: "name", type: "string" },
  { name: "version", type: "string" },
  { name: "chainId", type: "uint256" },
  { name: "verifyingContract", type: "address" },
];

const typeHash = (s) => keccak256(toUtf8Bytes(s));
export const VOUCHER_TYPEHASH = typeHash(VOUCHER_TYPE);
export const CLOSE_TYPEHASH = typeHash(CLOSE_TYPE);
export const CAPS_TYPEHASH = typeHash(CAPS_TYPE);
export const RECEIPT_TYPEHASH = typeHash(RECEIPT_TYPE);

// ------------------------------------------------------------------------------------------------ encoding
/** A uint256 as a 32-byte word. */
export function word(value) {
  const v = BigInt(value);
  if (v < 0n || v >= 1n << 256n) throw new RangeError(`word out of range: ${v}`);
  return toBeHex(v, 32);
}

/** An address left-padded to 32 bytes. */
export const addressWord = (address) => zeroPadValue(getAddress(address), 32);

/** Checks a 0x-prefixed 32-byte hex value and lower-cases it. */
export function bytes32(value, field = "value") {
  if (typeof value !== "string" || !/^0x[0-9a-fA-F]{64}$/.test(value)) {
    throw new TypeError(`${field} must be 0x + 64 hex digits`);
  }
  return value.toLowerCase();
}

export function checkAmount(value, field = "amount") {
  const v = BigInt(value);
  if (v < 0n || v > MAX_AMOUNT) throw new RangeError(`${field} ${v} outside [0, 2^96)`);
  return v;
}

// ------------------------------------------------------------------------------------------------ domain
/** The signing domain of one ChainStreamChannels deployment (what /api/v1/info returns as `domain`). */
export function makeDomain({ chainId, verifyingContract, name = DOMAIN_NAME, version = DOMAIN_VERSION }) {
  return Object.freeze({ name, version, chainId: BigInt(chainId), verifyingContract: getAddress(verifyingContract) });
}

export const domainSeparator = (domain) => TypedDataEncoder.hashDomain(domain);

/** keccak256("\x19\x01" || domainSeparator || structHash). */
export const eip712Digest = (domain, structHash) => keccak256(concat(["0x1901", domainSeparator(domain), structHash]));

// ------------------------------------------------------------------------------------------------ vouchers
/** A voucher: `payees[i]` is owed `amounts[i]` in total since the channel opened. */
export function makeVoucher(channelId, payees = [], amounts = [], playHash = GENESIS) {
  const ps = payees.map((p) => getAddress(p));
  const as = amounts.map((a) => checkAmount(a, "voucher amount"));
  if (ps.length !== as.length) throw new Error("payees and amounts differ in length");
  if (new Set(ps).size !== ps.length) throw new Error("a payee appears twice");
  return Object.freeze({ channelId: bytes32(channelId, "channelId"), payees: ps, amounts: as, playHash: bytes32(playHash, "playHash") });
}

export const emptyVoucher = (channelId) => makeVoucher(channelId);
export const voucherTotal = (v) => v.amounts.reduce((a, b) => a + b, 0n);

export function voucherStructHash(v) {
  const payeesHash = keccak256(concat(v.payees.map(addressWord)));
  const amountsHash = keccak256(concat(v.amounts.map(word)));
  return keccak256(concat([VOUCHER_TYPEHASH, v.channelId, payeesHash, amountsHash, v.playHash]));
}

/** What the listener (or its session key) signs. */
export const voucherDigest = (domain, v) => eip712Digest(domain, voucherStructHash(v));

export const closeStructHash = (channelId, voucherDigestHex) =>
  keccak256(concat([CLOSE_TYPEHASH, bytes32(channelId), bytes32(voucherDigestHex)]));

/** What the relay signs to consent to a cooperative close at `v` (voucherDigest = 0 for an empty voucher). */
export function closeDigest(domain, v) {
  const vd = v.payees.length ? voucherDigest(domain, v) : ZERO_HASH;
  return eip712Digest(domain, closeStructHash(v.channelId, vd));
}

/** The EIP-712 message of a voucher for a wallet (decimal-string amounts). */
export const voucherMessage = (v) => ({
  channelId: v.channelId,
  payees: [...v.payees],
  amounts: v.amounts.map(String),
  playHash: v.playHash,
});

/** The JSON form the relay takes and returns ({payees, amounts: decimal strings, playHash}). */
export const voucherJson = (v) => ({ payees: [...v.payees], amounts: v.amounts.map(String), playHash: v.playHash });

export const voucherFromJson = (channelId, j) => makeVoucher(channelId, j.payees, j.amounts.map(BigInt), j.playHash);

/**
 * The next voucher: `payments` (ordered [payee, amount] pairs) added on top of `v`, new payees appended at the
 * end in order, and the receipt chained into playHash.
 */
export function addToVoucher(v, payments, receipt) {
  const payees = [...v.payees];
  const amounts = [...v.amounts];
  for (const [payeeRaw, amountRaw] of payments) {
    const amount = BigInt(amountRaw);
    if (amount < 0n) throw new Error("a payment cannot be negative");
    if (amount === 0n) continue;
    const payee = getAddress(payeeRaw);
    const i = payees.indexOf(payee);
    if (i >= 0) amounts[i] += amount;
    else {
      payees.push(payee);
      amounts.push(amount);
    }
  }
  return makeVoucher(v.channelId, payees, amounts, chainReceipt(v.playHash, receipt));
}

// ------------------------------------------------------------------------------------------------ receipts
export const memoHash = (memo) => (memo ? keccak256(toUtf8Bytes(memo)) : ZERO_HASH);

export function makeReceipt({ seq, target, kind, units, amount, splitHash, memo = "" }) {
  const s = BigInt(seq);
  if (s < 1n || s >= 1n << 64n) throw new RangeError(`receipt seq ${s} out of range`);
  const u = BigInt(units);
  if (u < 0n || u >= 1n << 32n) throw new RangeError(`receipt units ${u} out of range`);
  if (toUtf8Bytes(memo).length > MAX_MEMO_BYTES) throw new RangeError(`tip message longer than ${MAX_MEMO_BYTES} bytes`);
  return Object.freeze({
    seq: s, target: bytes32(target, "target"), kind: Number(kind), units: u,
    amount: checkAmount(amount, "receipt amount"), splitHash: bytes32(splitHash, "splitHash"), memo,
  });
}

/** head_n = keccak256(RECEIPT_TYPEHASH || head_{n-1} || seq || target || kind || units || amount || splitHash || memoHash). */
export function chainReceipt(prev, r) {
  return keccak256(concat([
    RECEIPT_TYPEHASH, bytes32(prev, "prev"), word(r.seq), r.target, word(r.kind), word(r.units), word(r.amount),
    r.splitHash, memoHash(r.memo),
  ]));
}

export const chainHead = (receipts, start = GENESIS) => receipts.reduce((head, r) => chainReceipt(head, r), start);

// ------------------------------------------------------------------------------------------------ splits
/** A split as the catalog serves it ({recipients, bps, feeRecipient, feeBps}), validated like pricing.Split. */
export function makeSplit({ recipients, bps, feeRecipient = ZERO_ADDRESS, feeBps = 0 }) {
  const rs = recipients.map((r) => getAddress(r));
  const bs = bps.map((b) => Number(b));
  const fr = getAddress(feeRecipient);
  const fb = Number(feeBps);
  const problems = splitProblems({ recipients: rs, bps: bs, feeRecipient: fr, feeBps: fb });
  if (problems.length) throw new Error(problems[0]);
  return Object.freeze({ recipients: rs, bps: bs, feeRecipient: fr, feeBps: fb });
}

/** Every reason a split would be refused (by pricing.Split and TrackRegistry); empty when valid. */
export function splitProblems({ recipients, bps, feeRecipient, feeBps }) {
  const out = [];
  const n = recipients.length;
  if (n < 1 || n > MAX_RECIPIENTS) out.push(`a split needs 1..${MAX_RECIPIENTS} recipients, got ${n}`);
  if (bps.length !== n) out.push("recipients and shares differ in length");
  const lower = recipients.map((r) => String(r).toLowerCase());
  if (new Set(lower).size !== n) out.push("recipients must be distinct");
  if (lower.includes(ZERO_ADDRESS)) out.push("a recipient is the zero address");
  const sum = bps.reduce((a, b) => a + Number(b), 0);
  if (bps.some((b) => !(Number(b) > 0) || !Number.isInteger(Number(b)))) out.push("every share must be a positive whole number of bps");
  if (sum !== 10_000) out.push(`shares must sum to 10000 bps (100%), got ${sum}`);
  const fee = Number(feeBps);
  if (!Number.isInteger(fee) || fee < 0 || fee > MAX_FEE_BPS) out.push(`the platform fee must be 0..${MAX_FEE_BPS} bps`);
  else if ((fee !== 0) !== (String(feeRecipient).toLowerCase() !== ZERO_ADDRESS)) {
    out.push("a platform fee needs a fee recipient (and a recipient needs a fee)");
  }
  return out;
}

/** keccak256(abi.encode(address[] recipients, uint16[] bps, address feeRecipient, uint16 feeBps)). */
export function splitHash(split) {
  return keccak256(AbiCoder.defaultAbiCoder().encode(
    ["address[]", "uint16[]", "address", "uint16"],
    [split.recipients, split.bps, split.feeRecipient, split.feeBps],
  ));
}

/**
 * The protocol's rounding rule (PROTOCOL.md 5.2): fee off the top; recipients 1.. get floor(rest * bps / 10000);
 * recipient 0 the remainder. Returns ordered [address, amount] pairs: fee recipient, recipients 1, 2, ...,
 * recipient 0 (an address seen twice keeps its first position); zero shares dropped.
 */
export function applySplit(split, amountRaw) {
  const amount = checkAmount(amountRaw);
  const shares = new Map();
  const add = (who, v) => shares.set(who, (shares.get(who) ?? 0n) + v);
  const fee = (amount * BigInt(split.feeBps)) / TOTAL_BPS;
  const rest = amount - fee;
  if (fee !== 0n) add(getAddress(split.feeRecipient), fee);
  let others = 0n;
  for (let i = 1; i < split.recipients.length; i++) {
    const share = (rest * BigInt(split.bps[i])) / TOTAL_BPS;
    others += share;
    add(getAddress(split.recipients[i]), share);
  }
  add(getAddress(split.recipients[0]), rest - others);
  return [...shares.entries()].filter(([, v]) => v !== 0n);
}

// ------------------------------------------------------------------------------------------------ signatures
/** Sign a 32-byte digest (no prefix) with a private key or an ethers Wallet: 65-byte r||s||v hex, v in {27, 28}. */
export function signDigest(keyOrWallet, digest) {
  const signingKey = typeof keyOrWallet === "string" ? new SigningKey(keyOrWallet) : keyOrWallet.signingKey;
  return signingKey.sign(digest).serialized;
}

/** The address that signed `digest` (no prefix). */
export const recoverDigest = (digest, signature) => recoverAddress(digest, signature);

/** EIP-2098 compact form {r, vs} of a 65-byte signature, as SettleEntry and cooperativeClose take it. */
export function toCompact(signature) {
  const sig = Signature.from(signature);
  return { r: sig.r, vs: sig.yParityAndS };
}

// ------------------------------------------------------------------------------------------------ channels & caps
/** keccak256(abi.encode(chainId, channelsContract, payer, token, relay, salt)). */
export function channelIdFor({ chainId, contract, payer, token, relay, salt }) {
  return keccak256(AbiCoder.defaultAbiCoder().encode(
    ["uint256", "address", "address", "address", "address", "bytes32"],
    [BigInt(chainId), contract, payer, token, relay, salt],
  ));
}

/** EIP-712 digest of the listener's spending caps (0 = no cap); signed by the payer or its session key. */
export function capsDigest(domain, { channelId, dailyCap, sessionCap, issuedAt }) {
  const struct = keccak256(concat([CAPS_TYPEHASH, bytes32(channelId), word(dailyCap), word(sessionCap), word(issuedAt)]));
  return eip712Digest(domain, struct);
}

// ------------------------------------------------------------------------------------------ read tokens
// ReadAccess(account, channelId, relay, notAfter): the owner's short-lived permission for a relay to show it its
// own data (docs/PROTOCOL.md §3.5). Wire form: account.channelId.notAfter.signature (docs/API.md, read tokens).
export const READ_ACCESS_TYPE = "ReadAccess(address account,bytes32 channelId,address relay,uint256 notAfter)";
export const READ_ACCESS_TYPES = {
  ReadAccess: [
    { name: "account", type: "address" },
    { name: "channelId", type: "bytes32" },
    { name: "relay", type: "address" },
    { name: "notAfter", type: "uint256" },
  ],
};
export const READ_ACCESS_TYPEHASH = typeHash(READ_ACCESS_TYPE);

export function readAccessDigest(domain, { account, channelId = ZERO_HASH, relay, notAfter }) {
  const struct = keccak256(concat([READ_ACCESS_TYPEHASH, addressWord(account), bytes32(channelId), addressWord(relay), word(notAfter)]));
  return eip712Digest(domain, struct);
}

/** The wire form of a signed ReadAccess message. */
export const readTokenText = ({ account, channelId = ZERO_HASH, notAfter }, signature) =>
  `${getAddress(account)}.${channelId.toLowerCase()}.${BigInt(notAfter)}.${signature}`;
