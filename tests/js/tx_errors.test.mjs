// Failed wallet and contract calls said as sentences (frontend/lib/wallet.js describeTxError): custom errors decoded
// from the committed ABIs even when ethers could not (a token's error inside a channel call), in words for the
// common ones, never a raw JSON-RPC dump or an amount in wei. Run: node --test tests/js/
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { Interface } from "ethers";

import { decodeRevert, describeTxError, knowErrorsOf } from "../../frontend/lib/wallet.js";

const abi = (name) => JSON.parse(readFileSync(new URL(`../../src/chainstream/chain/artifacts/${name}.json`, import.meta.url))).abi;
const channels = abi("ChainStreamChannels");
const registry = abi("TrackRegistry");
const token = abi("MockStablecoin");
knowErrorsOf(channels, registry, token);

/** A provider's error for a reverted call, the revert data where MetaMask-like wallets put it (not decoded by ethers). */
const rpcError = (data) => Object.assign(new Error("could not coalesce error"), { code: "UNKNOWN_ERROR", shortMessage: "could not coalesce error", info: { error: { code: -32603, message: "execution reverted", data } } });

test("custom errors from any of the page's contracts are decoded from raw revert data and said in words", () => {
  const erc20 = new Interface(token);
  const err = rpcError(erc20.encodeErrorResult("ERC20InsufficientBalance", ["0x" + "11".repeat(20), 5n, 20_000_000n]));
  assert.deepEqual(decodeRevert(err)?.name, "ERC20InsufficientBalance");
  assert.equal(describeTxError(err), "Your wallet does not hold enough of this token.");
  assert.doesNotMatch(describeTxError(err), /20000000|coalesce/);

  const reg = new Interface(registry);
  assert.equal(describeTxError(rpcError(reg.encodeErrorResult("SplitSharesInvalid", [9_950n]))), "The shares add up to 99.5 %, not 100 %.");
  assert.match(describeTxError(rpcError(reg.encodeErrorResult("TrackExists", ["0x" + "ab".repeat(32)]))), /already registered/);
  const ch = new Interface(channels);
  assert.match(describeTxError(rpcError(ch.encodeErrorResult("NothingToClaim", ["0x" + "11".repeat(20), "0x" + "00".repeat(20)]))), /Nothing to claim/);
});

test("an error ethers already decoded is used as is; one without a sentence is named with its arguments", () => {
  const decoded = { revert: { name: "ChannelWindowNotOver", args: ["0x" + "0c".repeat(32), 123n] } };
  assert.match(describeTxError(decoded), /challenge window is not over/);
  const other = { revert: { name: "VoucherStale", args: ["0x01", 5n, 7n] } };
  assert.equal(describeTxError(other), "the contract refused: VoucherStale(0x01, 5, 7)");
});

test("rejections, missing gas money and undecodable reverts are sentences, never the node's raw text", () => {
  assert.equal(describeTxError({ code: "ACTION_REJECTED" }), "you rejected the request in your wallet");
  assert.equal(describeTxError({ code: 4001, message: "User rejected the request." }), "you rejected the request in your wallet");
  assert.match(describeTxError({ code: "INSUFFICIENT_FUNDS", message: "insufficient funds for intrinsic transaction cost" }), /not have enough ETH/);
  const raw = rpcError("0xdeadbeef00");
  assert.match(describeTxError(raw), /would fail on chain and the contract gave no reason/);
  assert.doesNotMatch(describeTxError(raw), /coalesce|-32603/);
  assert.equal(describeTxError(new Error("the wallet returned no account")), "the wallet returned no account");
});
