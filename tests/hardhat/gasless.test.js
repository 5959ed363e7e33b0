// Gas-free onboarding and scheduled payouts (issue 13) on the Hardhat network: a listener holding only the
// stablecoin opens, tops up and closes by signatures alone; a payee opts in to payouts by signature and is paid
// by a batch it did not send.
"use strict";

const assert = require("node:assert/strict");
const { ethers } = require("hardhat");

const { VOUCHER_TYPES, CLOSE_TYPES, domainOf, isolateEachTest, increaseTime, latestTimestamp, expectRevert } =
  require("./helpers");

const OPEN_TYPES = {
  OpenChannel: [
    { name: "payer", type: "address" },
    { name: "token", type: "address" },
    { name: "relay", type: "address" },
    { name: "sessionKey", type: "address" },
    { name: "sessionExpiry", type: "uint32" },
    { name: "salt", type: "bytes32" },
    { name: "amount", type: "uint96" },
    { name: "maxFee", type: "uint96" },
    { name: "submitter", type: "address" },
    { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
};
const TOPUP_TYPES = {
  TopUpChannel: [
    { name: "payer", type: "address" },
    { name: "channelId", type: "bytes32" },
    { name: "amount", type: "uint96" },
    { name: "maxFee", type: "uint96" },
    { name: "submitter", type: "address" },
    { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
};
const CLOSE_AUTH_TYPES = {
  CloseChannel: [
    { name: "payer", type: "address" },
    { name: "channelId", type: "bytes32" },
    { name: "voucherDigest", type: "bytes32" },
    { name: "maxFee", type: "uint96" },
    { name: "submitter", type: "address" },
    { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
};
const SCHEDULE_TYPES = {
  PayoutSchedule: [
    { name: "payee", type: "address" },
    { name: "token", type: "address" },
    { name: "enabled", type: "bool" },
    { name: "recipient", type: "address" },
    { name: "threshold", type: "uint96" },
    { name: "period", type: "uint32" },
    { name: "maxFee", type: "uint64" },
    { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
};
const PERMIT_TYPES = {
  Permit: [
    { name: "owner", type: "address" },
    { name: "spender", type: "address" },
    { name: "value", type: "uint256" },
    { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
};
const NO_PERMIT = { value: 0n, deadline: 0n, v: 0, r: ethers.ZeroHash, s: ethers.ZeroHash };

/** PaidOutBatch entries (IChainStreamChannels.PaidOutBatch): one word `payee | amount << 162`, four words
 * `payee | 1 << 160, amount, fee, recipient`, or one word `payee | 1 << 161 | reason selector << 224`. */
function decodePayoutEntries(fee, entries) {
  const words = [...entries].map((w) => BigInt(w));
  const address = (word) => ethers.getAddress(ethers.toBeHex(word & ((1n << 160n) - 1n), 20));
  const out = [];
  for (let i = 0; i < words.length; i += 1) {
    const head = words[i];
    if (head & (1n << 161n)) {
      out.push({ payee: address(head), reason: ethers.toBeHex(head >> 224n, 4) });
    } else if (head & (1n << 160n)) {
      out.push({ payee: address(head), to: address(words[i + 3]), amount: words[i + 1], fee: words[i + 2] });
      i += 3;
    } else {
      out.push({ payee: address(head), to: address(head), amount: head >> 162n, fee });
    }
  }
  return out;
}

function compact(signature) {
  const sig = ethers.Signature.from(signature);
  return [sig.r, sig.yParityAndS];
}

describe("ChainStream gas-free onboarding and scheduled payouts", function () {
  let deployer, relay, artist, stranger, recipient;
  let listener; // a fresh wallet that never holds ETH
  let channels, gasless, stablecoin, token, domain, gaslessDomain, chainId;

  before(async function () {
    [deployer, relay, artist, stranger, recipient] = await ethers.getSigners();
    listener = ethers.Wallet.createRandom().connect(ethers.provider);
    channels = await ethers.deployContract("ChainStreamChannels", [86400, 3600, deployer.address]);
    stablecoin = await ethers.deployContract("MockStablecoin");
    await Promise.all([channels.waitForDeployment(), stablecoin.waitForDeployment()]);
    token = await stablecoin.getAddress();
    await (await channels.allowToken(token)).wait();
    gasless = await ethers.getContractAt("ChainStreamGasless", await channels.gasless());
    chainId = (await ethers.provider.getNetwork()).chainId;
    domain = domainOf(chainId, await channels.getAddress());
    gaslessDomain = { name: "ChainStreamGasless", version: "1", chainId, verifyingContract: await gasless.getAddress() };
  });

  isolateEachTest();

  async function permitFor(owner, value) {
    const deadline = BigInt((await latestTimestamp()) + 3600);
    const nonce = await stablecoin.nonces(owner.address);
    const permitDomain = { name: "Mock USD", version: "1", chainId, verifyingContract: token };
    const message = { owner: owner.address, spender: await gasless.getAddress(), value, nonce, deadline };
    const sig = ethers.Signature.from(await owner.signTypedData(permitDomain, PERMIT_TYPES, message));
    return { value, deadline, v: sig.v, r: sig.r, s: sig.s };
  }

  async function openAuth(overrides = {}) {
    const deadline = BigInt((await latestTimestamp()) + 600);
    return {
      payer: listener.address,
      token,
      relay: relay.address,
      sessionKey: ethers.ZeroAddress,
      sessionExpiry: 0,
      salt: ethers.id("gasless salt"),
      amount: 5_000_000n,
      maxFee: 50_000n,
      submitter: ethers.ZeroAddress,
      nonce: 1n,
      deadline,
      ...overrides,
    };
  }

  it("opens for a listener with no ETH: fee to the submitter within the signed max, the rest deposited", async function () {
    await (await stablecoin.mint(listener.address, 5_000_000n)).wait();
    const auth = await openAuth();
    assert.equal(await gasless.openDigest(auth), ethers.TypedDataEncoder.hash(gaslessDomain, OPEN_TYPES, auth));
    const [r, vs] = compact(await listener.signTypedData(gaslessDomain, OPEN_TYPES, auth));
    const permit = await permitFor(listener, auth.amount);

    await expectRevert(gasless.connect(relay).openFor(auth, r, vs, 50_001n, permit), gasless, "GaslessFeeAboveMax");
    await (await gasless.connect(relay).openFor(auth, r, vs, 40_000n, permit)).wait();

    const channelId = await channels.channelIdFor(listener.address, token, relay.address, auth.salt);
    const ch = await channels.getChannel(channelId);
    assert.equal(ch.payer, listener.address);
    assert.equal(ch.deposit, 4_960_000n);
    assert.equal(await stablecoin.balanceOf(relay.address), 40_000n);
    assert.equal(await stablecoin.balanceOf(await gasless.getAddress()), 0n);
    assert.equal(await ethers.provider.getBalance(listener.address), 0n);
    // Replaying the same authorisation is refused.
    await expectRevert(gasless.connect(relay).openFor(auth, r, vs, 0n, NO_PERMIT), gasless, "GaslessNonceUsed");
  });

  it("refuses altered terms, an expired deadline and a submitter the payer did not name", async function () {
    await (await stablecoin.mint(listener.address, 5_000_000n)).wait();
    const auth = await openAuth({ submitter: relay.address });
    const [r, vs] = compact(await listener.signTypedData(gaslessDomain, OPEN_TYPES, auth));
    const permit = await permitFor(listener, auth.amount);
    for (const change of [{ relay: stranger.address }, { amount: 4_000_000n }, { maxFee: 60_000n }, { sessionKey: stranger.address }]) {
      await expectRevert(
        gasless.connect(relay).openFor({ ...auth, ...change }, r, vs, 0n, permit),
        gasless,
        "GaslessInvalidSignature",
      );
    }
    await expectRevert(gasless.connect(stranger).openFor(auth, r, vs, 0n, permit), gasless, "GaslessWrongSubmitter");
    await increaseTime(601);
    await expectRevert(gasless.connect(relay).openFor(auth, r, vs, 0n, permit), gasless, "GaslessExpired");
  });

  it("a permit front-run by a stranger does not block the open", async function () {
    await (await stablecoin.mint(listener.address, 5_000_000n)).wait();
    const auth = await openAuth();
    const [r, vs] = compact(await listener.signTypedData(gaslessDomain, OPEN_TYPES, auth));
    const permit = await permitFor(listener, auth.amount);
    await (
      await stablecoin
        .connect(stranger)
        .permit(listener.address, await gasless.getAddress(), permit.value, permit.deadline, permit.v, permit.r, permit.s)
    ).wait();
    await (await gasless.connect(relay).openFor(auth, r, vs, 10_000n, permit)).wait();
    const channelId = await channels.channelIdFor(listener.address, token, relay.address, auth.salt);
    assert.equal((await channels.getChannel(channelId)).deposit, 4_990_000n);
  });

  it("tops up and closes cooperatively by signatures, the close fee coming out of the refund", async function () {
    await (await stablecoin.mint(listener.address, 8_000_000n)).wait();
    const auth = await openAuth();
    let [r, vs] = compact(await listener.signTypedData(gaslessDomain, OPEN_TYPES, auth));
    await (await gasless.connect(relay).openFor(auth, r, vs, 0n, await permitFor(listener, 8_000_000n))).wait();
    const channelId = await channels.channelIdFor(listener.address, token, relay.address, auth.salt);

    const topUp = { payer: listener.address, channelId, amount: 3_000_000n, maxFee: 30_000n, submitter: ethers.ZeroAddress, nonce: 2n, deadline: auth.deadline };
    [r, vs] = compact(await listener.signTypedData(gaslessDomain, TOPUP_TYPES, topUp));
    await (await gasless.connect(relay).topUpFor(topUp, r, vs, 30_000n, NO_PERMIT)).wait();
    assert.equal((await channels.getChannel(channelId)).deposit, 7_970_000n);

    const voucher = { channelId, payees: [artist.address], amounts: [1_000_000n], playHash: ethers.id("plays") };
    const vsig = ethers.Signature.from(await listener.signTypedData(domain, VOUCHER_TYPES, voucher));
    const entry = { ...voucher, prevAmounts: [], r: vsig.r, vs: vsig.yParityAndS };
    const voucherDigest = ethers.TypedDataEncoder.hash(domain, VOUCHER_TYPES, voucher);
    const [rr, rvs] = compact(await relay.signTypedData(domain, CLOSE_TYPES, { channelId, voucherDigest }));
    const close = { payer: listener.address, channelId, voucherDigest, maxFee: 20_000n, submitter: ethers.ZeroAddress, nonce: 3n, deadline: auth.deadline };
    [r, vs] = compact(await listener.signTypedData(gaslessDomain, CLOSE_AUTH_TYPES, close));
    // Another final voucher than the one the payer signed to close at is refused.
    const other = { ...voucher, amounts: [2_000_000n] };
    const osig = ethers.Signature.from(await listener.signTypedData(domain, VOUCHER_TYPES, other));
    await expectRevert(
      gasless.connect(relay).cooperativeCloseFor(close, r, vs, 0n, { ...other, prevAmounts: [], r: osig.r, vs: osig.yParityAndS }, rr, rvs),
      gasless,
      "GaslessVoucherMismatch",
    );
    const relayBefore = await stablecoin.balanceOf(relay.address);
    await (await gasless.connect(relay).cooperativeCloseFor(close, r, vs, 20_000n, entry, rr, rvs)).wait();
    assert.equal(await stablecoin.balanceOf(relay.address) - relayBefore, 20_000n);
    assert.equal(await stablecoin.balanceOf(listener.address), 7_970_000n - 1_000_000n - 20_000n);
    assert.equal(await channels.claimable(artist.address, token), 1_000_000n);
    assert.equal(await ethers.provider.getBalance(listener.address), 0n);
  });

  it("pays a scheduled payee once, to the recipient it signed, and skips what is not due", async function () {
    // Credit the artist 2 mUSD and a stranger 1 mUSD through a settled channel.
    await (await stablecoin.mint(listener.address, 5_000_000n)).wait();
    const auth = await openAuth();
    const [r, vs] = compact(await listener.signTypedData(gaslessDomain, OPEN_TYPES, auth));
    await (await gasless.connect(relay).openFor(auth, r, vs, 0n, await permitFor(listener, 5_000_000n))).wait();
    const channelId = await channels.channelIdFor(listener.address, token, relay.address, auth.salt);
    const voucher = { channelId, payees: [artist.address, stranger.address], amounts: [2_000_000n, 1_000_000n], playHash: ethers.id("p") };
    const vsig = ethers.Signature.from(await listener.signTypedData(domain, VOUCHER_TYPES, voucher));
    await (await channels.connect(relay).settle({ ...voucher, prevAmounts: [], r: vsig.r, vs: vsig.yParityAndS })).wait();

    const schedule = { payee: artist.address, token, enabled: true, recipient: recipient.address, threshold: 1_500_000n, period: 86400, maxFee: 10_000n, nonce: 0n, deadline: auth.deadline };
    const [sr, svs] = compact(await artist.signTypedData(gaslessDomain, SCHEDULE_TYPES, schedule));
    await expectRevert(
      gasless.connect(relay).setPayoutScheduleFor({ ...schedule, recipient: relay.address }, sr, svs),
      gasless,
      "GaslessInvalidSignature",
    );
    await (await gasless.connect(relay).setPayoutScheduleFor(schedule, sr, svs)).wait();
    await expectRevert(gasless.connect(relay).setPayoutScheduleFor(schedule, sr, svs), gasless, "GaslessScheduleNonce");

    const fee = 25_000n; // above the artist's max: it pays its max
    const receipt = await (await channels.connect(relay).payoutBatch(token, [artist.address, stranger.address, artist.address], fee)).wait();
    // The batch's one record, decoded here independently of the Python decoder (docs/PROTOCOL.md §14.2).
    const records = receipt.logs.map((l) => channels.interface.parseLog(l)).filter((e) => e?.name === "PaidOutBatch");
    assert.equal(records.length, 1);
    assert.deepEqual([records[0].args.token, records[0].args.submitter, records[0].args.fee], [token, relay.address, fee]);
    const entries = records[0].args[3]; // not args.entries: that name is a method of ethers' Result
    assert.deepEqual(decodePayoutEntries(records[0].args.fee, entries), [
      { payee: artist.address, to: recipient.address, amount: 1_990_000n, fee: 10_000n }, // four words: fee capped, recipient
      { payee: stranger.address, reason: channels.interface.getError("PayoutNotScheduled").selector },
      { payee: artist.address, reason: channels.interface.getError("PayoutBelowThreshold").selector }, // paid once
    ]);
    assert.equal(await stablecoin.balanceOf(recipient.address), 1_990_000n);
    assert.equal(await stablecoin.balanceOf(relay.address), 10_000n);
    assert.equal(await channels.claimable(artist.address, token), 0n);
    assert.equal(await channels.claimable(stranger.address, token), 1_000_000n); // no schedule: untouched
    const [, lastPaidAt] = await channels.payoutSchedule(artist.address, token);
    assert.ok(lastPaidAt > 0n);

    // The stranger's pull claim keeps working.
    await (await channels.connect(stranger).claim(token, stranger.address)).wait();
    assert.equal(await stablecoin.balanceOf(stranger.address), 1_000_000n);

    // Opting out by transaction stops payouts and voids signed schedules not yet submitted.
    await (await gasless.connect(artist).setPayoutSchedule(token, { enabled: false, recipient: ethers.ZeroAddress, threshold: 0, period: 0, maxFee: 0 })).wait();
    assert.equal((await channels.payoutSchedule(artist.address, token))[0].enabled, false);
    assert.equal(await gasless.scheduleNonce(artist.address), 2n);
  });
});
