// Gas-free authorisations (docs/PROTOCOL.md §14): the EIP-712 types of ChainStreamGasless and the JSON bodies of the
// relay's /onboard and /payouts routes (docs/API.md, "Gas-free onboarding and scheduled payouts"). Pure: no I/O.
// The wallet signs these with eth_signTypedData_v4; the relay submits them and keeps at most the signed maxFee.
import { TypedDataEncoder, getAddress, hexlify, randomBytes } from "ethers";

export const GASLESS_NAME = "ChainStreamGasless";
export const GASLESS_VERSION = "1";
/** Seconds an authorisation (and its permit) stays valid, as the SDK's AUTH_TTL. */
export const AUTH_TTL = 600;

export const OPEN_TYPES = {
  OpenChannel: [
    { name: "payer", type: "address" }, { name: "token", type: "address" }, { name: "relay", type: "address" },
    { name: "sessionKey", type: "address" }, { name: "sessionExpiry", type: "uint32" }, { name: "salt", type: "bytes32" },
    { name: "amount", type: "uint96" }, { name: "maxFee", type: "uint96" }, { name: "submitter", type: "address" },
    { name: "nonce", type: "uint256" }, { name: "deadline", type: "uint256" },
  ],
};
export const TOPUP_TYPES = {
  TopUpChannel: [
    { name: "payer", type: "address" }, { name: "channelId", type: "bytes32" }, { name: "amount", type: "uint96" },
    { name: "maxFee", type: "uint96" }, { name: "submitter", type: "address" }, { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
};
export const CLOSE_AUTH_TYPES = {
  CloseChannel: [
    { name: "payer", type: "address" }, { name: "channelId", type: "bytes32" }, { name: "voucherDigest", type: "bytes32" },
    { name: "maxFee", type: "uint96" }, { name: "submitter", type: "address" }, { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
};
export const SCHEDULE_TYPES = {
  PayoutSchedule: [
    { name: "payee", type: "address" }, { name: "token", type: "address" }, { name: "enabled", type: "bool" },
    { name: "recipient", type: "address" }, { name: "threshold", type: "uint96" }, { name: "period", type: "uint32" },
    { name: "maxFee", type: "uint64" }, { name: "nonce", type: "uint256" }, { name: "deadline", type: "uint256" },
  ],
};

export const EIP2612_TYPES = {
  Permit: [
    { name: "owner", type: "address" }, { name: "spender", type: "address" }, { name: "value", type: "uint256" },
    { name: "nonce", type: "uint256" }, { name: "deadline", type: "uint256" },
  ],
};

/** The gasless domain: its address is read from the chain (ChainStreamChannels.gasless()), never from the relay. */
export const gaslessDomain = (chainId, gasless) =>
  ({ name: GASLESS_NAME, version: GASLESS_VERSION, chainId: BigInt(chainId), verifyingContract: getAddress(gasless) });

/** A fresh unordered nonce for a payment authorisation (any unused 256-bit number). */
export const randomNonce = () => BigInt(hexlify(randomBytes(32)));

/** Fields the relay takes as JSON numbers; every other integer travels as a decimal string. */
const NUMBERS = new Set(["sessionExpiry", "period"]);

/** An authorisation message as the relay's JSON body wants it. */
export function authJson(message) {
  const out = {};
  for (const [k, v] of Object.entries(message)) {
    if (typeof v === "boolean" || typeof v === "string") out[k] = v;
    else if (NUMBERS.has(k)) out[k] = Number(v);
    else out[k] = BigInt(v).toString();
  }
  return out;
}

/** An EIP-2612 permit signature (ethers' Signature) as the relay's `permit` field. */
export const permitJson = (value, deadline, sig) =>
  ({ value: BigInt(value).toString(), deadline: BigInt(deadline).toString(), v: sig.v, r: sig.r, s: sig.s });

/** The digest the contract checks for an authorisation (for tests and for showing what was signed). */
export const authDigest = (domain, types, message) => TypedDataEncoder.hash(domain, types, message);

/**
 * The relay's quote, validated: the fee as a bigint, and the submitter to sign. A quote that is not a plain
 * decimal fee is refused (nothing is signed against a fee the page cannot show).
 */
export function parseQuote(quote) {
  const fee = typeof quote?.fee === "string" && /^\d{1,30}$/.test(quote.fee) ? BigInt(quote.fee) : null;
  const payoutFee = typeof quote?.payoutFee === "string" && /^\d{1,20}$/.test(quote.payoutFee) ? BigInt(quote.payoutFee) : null;
  if (fee === null || payoutFee === null) throw new Error("the relay's gas-free quote is malformed");
  return { fee, payoutFee, submitter: getAddress(quote.submitter) };
}
