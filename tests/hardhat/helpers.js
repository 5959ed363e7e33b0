// Shared EIP-712 definitions and chain helpers for the Hardhat tests.
// (Hardhat's mocha loads every .js under tests/hardhat; this file only exports helpers and declares no tests.)
"use strict";

const { ethers, network } = require("hardhat");

/** EIP-712 message types of ChainStream, exactly as contracts/libraries/VoucherHashing.sol declares them. */
const VOUCHER_TYPES = {
  Voucher: [
    { name: "channelId", type: "bytes32" },
    { name: "payees", type: "address[]" },
    { name: "amounts", type: "uint256[]" },
    { name: "playHash", type: "bytes32" },
  ],
};

const CLOSE_TYPES = {
  Close: [
    { name: "channelId", type: "bytes32" },
    { name: "voucherDigest", type: "bytes32" },
  ],
};

/** The signing domain of one ChainStreamChannels deployment. */
function domainOf(chainId, verifyingContract) {
  return { name: "ChainStream", version: "1", chainId, verifyingContract };
}

/** Snapshot the chain before each test of the calling suite and revert after it. */
function isolateEachTest() {
  let snapshot;
  beforeEach(async () => {
    snapshot = await network.provider.send("evm_snapshot", []);
  });
  afterEach(async () => {
    await network.provider.send("evm_revert", [snapshot]);
  });
}

/** Advance block time by `seconds` and mine a block. */
async function increaseTime(seconds) {
  await ethers.provider.send("evm_increaseTime", [Number(seconds)]);
  await ethers.provider.send("evm_mine", []);
}

async function latestTimestamp() {
  const block = await ethers.provider.getBlock("latest");
  return block.timestamp;
}

/**
 * Assert that `promise` rejects with the custom error `name` of `contract`, returning the decoded error.
 * Works whether ethers decoded the revert itself (err.revert) or only left the raw data (err.data).
 */
async function expectRevert(promise, contract, name) {
  let error;
  try {
    await promise;
  } catch (e) {
    error = e;
  }
  if (error === undefined) throw new Error(`expected a revert with ${name}, but the call succeeded`);
  const data = error.data ?? error.info?.error?.data;
  const decoded = error.revert ?? (typeof data === "string" ? contract.interface.parseError(data) : null);
  if (!decoded || decoded.name !== name) {
    throw new Error(`expected a revert with ${name}, got: ${decoded ? decoded.name : error.message}`);
  }
  return decoded;
}

module.exports = {
  VOUCHER_TYPES,
  CLOSE_TYPES,
  domainOf,
  isolateEachTest,
  increaseTime,
  latestTimestamp,
  expectRevert,
};
