// A full round trip with ethers v6 on the Hardhat network: register a track, open an ETH channel with a
// session key, pay plays with cumulative EIP-712 vouchers signed by the session key, settle them in a batch,
// claim, and close unilaterally (requestClose, challenge window, withdraw of the remainder).
"use strict";

const assert = require("node:assert/strict");
const { ethers } = require("hardhat");

const {
  VOUCHER_TYPES,
  CLOSE_TYPES,
  domainOf,
  isolateEachTest,
  increaseTime,
  latestTimestamp,
  expectRevert,
} = require("./helpers");

const CHALLENGE_PERIOD = 86400;
const KEY_ROTATION_GRACE = 3600;
const ETH = ethers.ZeroAddress;
const STATUS = { None: 0n, Open: 1n, Closing: 2n, Closed: 3n };

// A fixed session key: the listener's client holds it in memory and signs every voucher with it.
const SESSION_KEY = new ethers.Wallet(ethers.id("chainstream hardhat test session key"));

/** Split `price` by basis points, the remainder of integer division going to the first recipient. */
function splitAmounts(price, bps) {
  const shares = bps.map((b) => (price * BigInt(b)) / 10000n);
  shares[0] += price - shares.reduce((a, b) => a + b, 0n);
  return shares;
}

/** The next running play hash: keccak256(previous || receipt), standing in for the receipt chain. */
function nextPlayHash(previous, seq) {
  return ethers.keccak256(ethers.concat([previous, ethers.zeroPadValue(ethers.toBeHex(seq), 32)]));
}

/** Sign a voucher with `signer` (signTypedData) and build the SettleEntry tuple the contract takes. */
async function signEntry(signer, domain, voucher, prevAmounts) {
  const signature = await signer.signTypedData(domain, VOUCHER_TYPES, voucher);
  const sig = ethers.Signature.from(signature);
  return {
    signature,
    entry: {
      channelId: voucher.channelId,
      payees: voucher.payees,
      amounts: voucher.amounts,
      playHash: voucher.playHash,
      prevAmounts,
      r: sig.r,
      vs: sig.yParityAndS, // EIP-2098 compact (v, s)
    },
  };
}

function eventsOf(receipt, contract, name) {
  return receipt.logs
    .map((log) => {
      try {
        return contract.interface.parseLog(log);
      } catch {
        return null;
      }
    })
    .filter((parsed) => parsed !== null && parsed.name === name);
}

describe("ChainStream round trip (ethers v6, Hardhat network)", function () {
  let deployer, listener, relay, artist, featured, settler;
  let channels, registry, stablecoin, domain, chainId;

  before(async function () {
    [deployer, listener, relay, artist, featured, settler] = await ethers.getSigners();
    channels = await ethers.deployContract("ChainStreamChannels", [
      CHALLENGE_PERIOD,
      KEY_ROTATION_GRACE,
      deployer.address,
    ]);
    registry = await ethers.deployContract("TrackRegistry");
    stablecoin = await ethers.deployContract("MockStablecoin");
    await Promise.all([channels.waitForDeployment(), registry.waitForDeployment(), stablecoin.waitForDeployment()]);
    await (await channels.allowToken(await stablecoin.getAddress())).wait();
    chainId = (await ethers.provider.getNetwork()).chainId;
    domain = domainOf(chainId, await channels.getAddress());
  });

  isolateEachTest();

  it("has the expected deployment parameters and EIP-712 domain", async function () {
    assert.equal(await channels.challengePeriod(), BigInt(CHALLENGE_PERIOD));
    assert.equal(await channels.keyRotationGrace(), BigInt(KEY_ROTATION_GRACE));
    assert.equal(await channels.tokenAdmin(), deployer.address);
    assert.equal(await channels.tokenIdOf(await stablecoin.getAddress()), 1n);
    assert.equal(await channels.domainSeparator(), ethers.TypedDataEncoder.hashDomain(domain));
    assert.equal(await stablecoin.decimals(), 6n);
  });

  it("registers a track, pays plays through session-key vouchers, settles, claims and closes", async function () {
    // --- the artist publishes a track: 0.001 ETH per play, 70/30 split with a featured artist
    const trackId = ethers.id("track:night-drive");
    const perPlay = ethers.parseEther("0.001");
    const terms = { perPlay, perSecond: 0n, download: 0n, model: 0, ownAfter: 0, minSeconds: 30, enabled: true };
    const split = { recipients: [artist.address, featured.address], bps: [7000, 3000], feeRecipient: ETH, feeBps: 0 };
    await (await registry.connect(artist).registerTrack(trackId, "Night Drive", ETH, terms, split)).wait();

    const track = await registry.getTrack(trackId);
    assert.equal(track.owner, artist.address);
    assert.equal(track.title, "Night Drive");
    assert.equal(track.splitVersion, 1n);
    const expectedSplitHash = ethers.keccak256(
      ethers.AbiCoder.defaultAbiCoder().encode(
        ["address[]", "uint16[]", "address", "uint16"],
        [split.recipients, split.bps, split.feeRecipient, split.feeBps],
      ),
    );
    assert.equal(track.splitHash, expectedSplitHash);
    assert.equal(await registry.hashSplit(split), expectedSplitHash);
    const onchainTerms = await registry.getTerms(trackId, ETH);
    assert.equal(onchainTerms.perPlay, perPlay);
    assert.equal(onchainTerms.enabled, true);
    assert.equal(await registry.trackCount(), 1n);

    // --- the listener opens an ETH channel with a session key
    const deposit = ethers.parseEther("0.01");
    const salt = ethers.id("listener channel #1");
    const expiry = (await latestTimestamp()) + 7 * 86400;
    const expectedId = await channels.channelIdFor(listener.address, ETH, relay.address, salt);
    const openTx = await channels
      .connect(listener)
      .open(relay.address, ETH, deposit, salt, SESSION_KEY.address, expiry, { value: deposit });
    const openReceipt = await openTx.wait();
    const [opened] = eventsOf(openReceipt, channels, "ChannelOpened");
    const channelId = opened.args.channelId;
    assert.equal(channelId, expectedId);
    assert.equal(
      channelId,
      ethers.keccak256(
        ethers.AbiCoder.defaultAbiCoder().encode(
          ["uint256", "address", "address", "address", "address", "bytes32"],
          [chainId, await channels.getAddress(), listener.address, ETH, relay.address, salt],
        ),
      ),
    );
    let ch = await channels.getChannel(channelId);
    assert.equal(ch.payer, listener.address);
    assert.equal(ch.relay, relay.address);
    assert.equal(ch.token, ETH);
    assert.equal(ch.deposit, deposit);
    assert.equal(ch.settled, 0n);
    assert.equal(ch.sessionKey, SESSION_KEY.address);
    assert.equal(ch.sessionExpiry, BigInt(expiry));
    assert.equal(ch.status, STATUS.Open);
    assert.equal(await ethers.provider.getBalance(await channels.getAddress()), deposit);

    // --- plays: each adds the track's split of perPlay to the cumulative voucher
    const payees = split.recipients;
    const perPlayShares = splitAmounts(perPlay, split.bps);
    let amounts = [0n, 0n];
    let playHash = ethers.ZeroHash;
    const vouchers = [];
    for (let seq = 1; seq <= 3; seq++) {
      amounts = amounts.map((a, i) => a + perPlayShares[i]);
      playHash = nextPlayHash(playHash, seq);
      vouchers.push({ channelId, payees, amounts: [...amounts], playHash });
    }

    // The session key signs; the digest it signs is the contract's voucherDigest().
    const v1 = vouchers[0];
    const v3 = vouchers[2];
    for (const voucher of [v1, v3]) {
      const digest = ethers.TypedDataEncoder.hash(domain, VOUCHER_TYPES, voucher);
      assert.equal(
        await channels.voucherDigest(voucher.channelId, voucher.payees, voucher.amounts, voucher.playHash),
        digest,
      );
    }
    const first = await signEntry(SESSION_KEY, domain, v1, []);
    assert.equal(ethers.verifyTypedData(domain, VOUCHER_TYPES, v1, first.signature), SESSION_KEY.address);

    // --- anyone settles the first voucher
    let receipt = await (await channels.connect(relay).settleBatch([first.entry])).wait();
    const [settled1] = eventsOf(receipt, channels, "ChannelSettled");
    assert.equal(settled1.args.channelId, channelId);
    assert.equal(settled1.args.settled, perPlay);
    assert.equal(settled1.args.playHash, v1.playHash);
    assert.equal(await channels.claimable(artist.address, ETH), perPlayShares[0]);
    assert.equal(await channels.claimable(featured.address, ETH), perPlayShares[1]);

    // --- a batch with the latest voucher (prevAmounts = what was settled) and the old one, now stale
    const third = await signEntry(SESSION_KEY, domain, v3, v1.amounts);
    const credited = await channels.connect(relay).settleBatch.staticCall([third.entry, first.entry]);
    assert.equal(credited, 2n * perPlay);
    receipt = await (await channels.connect(relay).settleBatch([third.entry, first.entry])).wait();
    const [settled3] = eventsOf(receipt, channels, "ChannelSettled");
    assert.equal(settled3.args.settled, 3n * perPlay);
    const [skipped] = eventsOf(receipt, channels, "SettlementSkipped");
    assert.equal(skipped.args.index, 1n);
    assert.equal(skipped.args.reason, channels.interface.getError("VoucherStale").selector);

    ch = await channels.getChannel(channelId);
    assert.equal(ch.settled, 3n * perPlay);
    assert.equal(await channels.claimable(artist.address, ETH), 3n * perPlayShares[0]);
    assert.equal(await channels.claimable(featured.address, ETH), 3n * perPlayShares[1]);

    // A voucher signed by someone else is refused (strict single settle reverts with the reason).
    const v4 = { ...v3, amounts: v3.amounts.map((a) => a + 1n), playHash: nextPlayHash(v3.playHash, 4) };
    const forged = await signEntry(settler, domain, v4, v3.amounts);
    const err = await expectRevert(
      channels.connect(relay).settle(forged.entry),
      channels,
      "VoucherUnauthorizedSigner",
    );
    assert.equal(err.args[1], settler.address);

    // --- payees claim
    const artistBefore = await ethers.provider.getBalance(artist.address);
    receipt = await (await channels.connect(artist).claim(ETH, artist.address)).wait();
    assert.equal(await ethers.provider.getBalance(artist.address), artistBefore + 3n * perPlayShares[0] - receipt.fee);
    assert.equal(await channels.claimable(artist.address, ETH), 0n);
    await expectRevert(channels.connect(artist).claim(ETH, artist.address), channels, "NothingToClaim");

    // featured artist claims to a different address
    const beneficiary = ethers.Wallet.createRandom().address;
    await (await channels.connect(featured).claim(ETH, beneficiary)).wait();
    assert.equal(await ethers.provider.getBalance(beneficiary), 3n * perPlayShares[1]);

    // --- unilateral close: request, wait out the challenge window, withdraw the remainder
    receipt = await (await channels.connect(listener).requestClose(channelId)).wait();
    const [closeRequested] = eventsOf(receipt, channels, "CloseRequested");
    const closeBlock = await ethers.provider.getBlock(receipt.blockNumber);
    assert.equal(closeRequested.args.closesAt, BigInt(closeBlock.timestamp + CHALLENGE_PERIOD));
    assert.equal((await channels.getChannel(channelId)).status, STATUS.Closing);
    await expectRevert(channels.connect(listener).withdraw(channelId), channels, "ChannelWindowNotOver");

    await increaseTime(CHALLENGE_PERIOD);

    const listenerBefore = await ethers.provider.getBalance(listener.address);
    receipt = await (await channels.connect(listener).withdraw(channelId)).wait();
    const refund = deposit - 3n * perPlay;
    const [closed] = eventsOf(receipt, channels, "ChannelClosed");
    assert.equal(closed.args.settled, 3n * perPlay);
    assert.equal(closed.args.refund, refund);
    assert.equal(closed.args.cooperative, false);
    assert.equal(await ethers.provider.getBalance(listener.address), listenerBefore + refund - receipt.fee);
    assert.equal((await channels.getChannel(channelId)).status, STATUS.Closed);
    assert.equal(await ethers.provider.getBalance(await channels.getAddress()), 0n);
  });

  it("closes cooperatively with the relay's EIP-712 Close signature (stablecoin channel)", async function () {
    const token = await stablecoin.getAddress();
    const deposit = 5_000_000n; // 5 mUSD
    await (await stablecoin.mint(listener.address, deposit)).wait();
    await (await stablecoin.connect(listener).approve(await channels.getAddress(), deposit)).wait();
    const salt = ethers.id("listener stablecoin channel");
    const channelId = await channels.channelIdFor(listener.address, token, relay.address, salt);
    const expiry = (await latestTimestamp()) + 86400;
    await (
      await channels.connect(listener).open(relay.address, token, deposit, salt, SESSION_KEY.address, expiry)
    ).wait();
    assert.equal(await stablecoin.balanceOf(await channels.getAddress()), deposit);

    const voucher = { channelId, payees: [artist.address], amounts: [1_250_000n], playHash: ethers.id("plays") };
    const { entry } = await signEntry(SESSION_KEY, domain, voucher, []);
    const voucherDigest = ethers.TypedDataEncoder.hash(domain, VOUCHER_TYPES, voucher);

    // The relay consents to closing at exactly this voucher.
    const close = { channelId, voucherDigest };
    assert.equal(
      await channels.closeDigest(channelId, voucherDigest),
      ethers.TypedDataEncoder.hash(domain, CLOSE_TYPES, close),
    );
    const relaySig = ethers.Signature.from(await relay.signTypedData(domain, CLOSE_TYPES, close));

    // A close signed by anyone but the relay is refused.
    const wrongSig = ethers.Signature.from(await settler.signTypedData(domain, CLOSE_TYPES, close));
    await expectRevert(
      channels.connect(listener).cooperativeClose(entry, wrongSig.r, wrongSig.yParityAndS),
      channels,
      "CloseInvalidRelaySignature",
    );

    const receipt = await (
      await channels.connect(listener).cooperativeClose(entry, relaySig.r, relaySig.yParityAndS)
    ).wait();
    const [closed] = eventsOf(receipt, channels, "ChannelClosed");
    assert.equal(closed.args.cooperative, true);
    assert.equal(closed.args.refund, deposit - 1_250_000n);
    assert.equal(await stablecoin.balanceOf(listener.address), deposit - 1_250_000n);
    assert.equal(await channels.claimable(artist.address, token), 1_250_000n);
    await (await channels.connect(artist).claim(token, artist.address)).wait();
    assert.equal(await stablecoin.balanceOf(artist.address), 1_250_000n);
    assert.equal((await channels.getChannel(channelId)).status, STATUS.Closed);
  });
});
