// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IChainStreamChannels
/// @notice One escrow contract holds every listener's channel. A channel is funded once (ETH or an allowed
/// ERC-20) and pays many payees through cumulative EIP-712 vouchers signed off-chain by the listener or by a
/// session key. Anyone may settle the latest vouchers of many channels in one transaction; payees pull what
/// was credited to them; the listener gets the unspent remainder back after a challenge window.
/// @dev The interface is the contract's documentation: every error and event is declared and described here.
interface IChainStreamChannels {
    // ------------------------------------------------------------------ types

    /// @notice A voucher submitted for settlement, with the settler's view of the channel's last settled state.
    /// @param channelId The channel the voucher pays from.
    /// @param payees Everyone the listener has paid through this channel, in first-paid order. The list only
    /// ever grows at its end, so the previously settled payees are always a prefix of it.
    /// @param amounts Cumulative amount owed to `payees[i]` since the channel opened (never decreases).
    /// @param playHash Running hash over the listener's play receipts (see docs/PROTOCOL.md); emitted, not stored.
    /// @param prevAmounts The amounts credited by the channel's last settlement (empty if none), in payee order.
    /// The contract stores only a 160-bit commitment to them and checks this against it.
    /// @param r Signature r.
    /// @param vs EIP-2098 compact form of (v, s): s with the recovery bit (v - 27) in its top bit. s must be in
    /// the lower half of the curve order, so a malleable high-s twin can never be submitted.
    struct SettleEntry {
        bytes32 channelId;
        address[] payees;
        uint256[] amounts;
        bytes32 playHash;
        uint256[] prevAmounts;
        bytes32 r;
        bytes32 vs;
    }

    /// @notice Public view of a channel.
    struct ChannelView {
        address payer;
        address token;
        address relay;
        uint256 deposit;
        uint256 settled;
        address sessionKey;
        uint32 sessionExpiry;
        uint32 closesAt;
        bytes20 settledRoot;
        ChannelStatus status;
    }

    /// @notice A payee's standing order to have its balance of one token pushed to it (see payoutBatch). Stored in the
    /// payee's balance slot (PackedBalance), where `threshold` and `maxFee` are decimal floats: a value of more than
    /// 7 significant digits is kept rounded, the threshold up and the max fee down (never earlier, never dearer).
    /// @param enabled False cancels the schedule (pull claims always keep working).
    /// @param recipient Where payouts go; address(0) means the payee itself.
    /// @param threshold A payout is due only once the balance reaches this (0: any balance above the fee).
    /// @param period A payout is due only this many seconds after the previous one (0: no waiting).
    /// @param maxFee The most a submitter may keep from one payout, in the token's units.
    struct PayoutSchedule {
        bool enabled;
        address recipient;
        uint96 threshold;
        uint32 period;
        uint64 maxFee;
    }

    /// @notice Lifecycle of a channel. `Closing` keeps accepting settlements until the window ends.
    enum ChannelStatus {
        None,
        Open,
        Closing,
        Closed
    }

    // ----------------------------------------------------------------- errors

    /// @notice No channel has this id.
    error ChannelNotFound(bytes32 channelId);
    /// @notice A channel with this id already exists (ids are never reused, even after close).
    error ChannelExists(bytes32 channelId);
    /// @notice The operation needs an open channel (no close requested).
    error ChannelNotOpen(bytes32 channelId, uint32 closesAt);
    /// @notice The channel no longer accepts settlements: its challenge window ended or it was closed.
    error ChannelNotSettleable(bytes32 channelId, uint32 closesAt);
    /// @notice Only the channel's payer may do this.
    error ChannelNotPayer(bytes32 channelId, address caller);
    /// @notice The challenge window has not ended yet, or no close was requested.
    error ChannelWindowNotOver(bytes32 channelId, uint32 closesAt);
    /// @notice A deposit or top-up of zero.
    error ChannelDepositZero();
    /// @notice The ETH sent does not match the stated amount (or ETH was sent with a token deposit).
    error ChannelValueMismatch(uint256 expected, uint256 sent);
    /// @notice The deposit would exceed the 96-bit amount range.
    error ChannelDepositOverflow(bytes32 channelId, uint256 deposit);
    /// @notice The relay address is zero.
    error ChannelRelayZero();
    /// @notice The session key expiry is not in the future.
    error SessionKeyExpiryInPast(uint32 expiry);
    /// @notice Only the channel's relay settles while the channel is open or early in its close window; anyone
    /// may from `opensAt` (the second half of the window; 0 while the channel is open).
    error SettleNotAllowed(bytes32 channelId, address caller, uint32 opensAt);
    /// @notice A rotated-out session key is still within its grace period; rotate again after `validUntil`.
    error SessionKeyRotationPending(bytes32 channelId, uint32 validUntil);
    /// @notice Setting the same session key again may not end it sooner than a rotation would (its expiry, or
    /// the rotation grace from now, whichever is earlier): `expiry` must be at least `minimum`.
    error SessionKeyExpiryBelowGrace(bytes32 channelId, uint32 expiry, uint32 minimum);
    /// @notice The ERC-20 is not on the allowlist.
    error TokenNotAllowed(address token);
    /// @notice The ERC-20 is already on the allowlist.
    error TokenAlreadyAllowed(address token);
    /// @notice payees, amounts and prevAmounts lengths are inconsistent.
    error VoucherLengthMismatch(bytes32 channelId, uint256 payees, uint256 amounts, uint256 prevAmounts);
    /// @notice The voucher's amounts exceed the 96-bit amount range.
    error VoucherAmountOverflow(bytes32 channelId);
    /// @notice prevAmounts (and the payee prefix) do not match the channel's last settled state, or do not sum
    /// to the settled total.
    error VoucherPrevStateMismatch(bytes32 channelId, bytes20 settledRoot);
    /// @notice The signature is malformed, or has a high s value (malleable twin).
    error VoucherInvalidSignature(bytes32 channelId);
    /// @notice The signer is neither the payer nor a session key valid now.
    error VoucherUnauthorizedSigner(bytes32 channelId, address signer);
    /// @notice A payee's cumulative amount is lower than what was already settled to it.
    error VoucherNotMonotonic(bytes32 channelId, uint256 index);
    /// @notice The voucher states no more than what is already settled (returned as a skip reason, never reverts).
    error VoucherStale(bytes32 channelId, uint256 total, uint256 settled);
    /// @notice The relay's cooperative-close signature does not match the channel's relay.
    error CloseInvalidRelaySignature(bytes32 channelId, address signer);
    /// @notice The caller has nothing to claim in this token.
    error NothingToClaim(address payee, address token);
    /// @notice The claim recipient is the zero address.
    error ClaimToZero();
    /// @notice Only the token admin may change the token allowlist.
    error NotTokenAdmin(address caller);
    /// @notice An ETH payout was refused by the recipient.
    error PayoutFailed(address to, uint256 amount);
    /// @notice Only the gas-free entry point contract (`gasless()`) may act on a signer's behalf.
    error NotGaslessForwarder(address caller);
    /// @notice An enabled payout schedule needs a threshold or a period (else any submitter could push every
    /// few wei and keep a fee each time).
    error PayoutScheduleEmpty(address payee);
    /// @notice Skip reason in payoutBatch (never reverted; see PaidOutBatch): the payee has no enabled schedule for this
    /// token.
    error PayoutNotScheduled(address payee);
    /// @notice Skip reason in payoutBatch: the balance is below the signed threshold, or not above the fee.
    error PayoutBelowThreshold(address payee, uint256 balance, uint256 threshold, uint256 fee);
    /// @notice Skip reason in payoutBatch: the signed period since the last payout has not passed.
    error PayoutNotDue(address payee, uint256 dueAt);

    // ----------------------------------------------------------------- events

    /// @notice An ERC-20 was added to the allowlist.
    /// @param token The token contract.
    /// @param tokenId Its compact id in this contract (ETH is 0).
    event TokenAllowed(address indexed token, uint16 tokenId);

    /// @notice A relay address was seen for the first time and given a compact id (the first 65,535 relays; a
    /// relay seen after that has no id and is stored with each of its channels instead, so relays are never
    /// refused however many were registered).
    event RelayRegistered(address indexed relay, uint16 relayId);

    /// @notice A channel was opened.
    /// @param channelId keccak256(abi.encode(chainId, this, payer, token, relay, salt)).
    event ChannelOpened(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed relay,
        address token,
        uint256 deposit,
        address sessionKey,
        uint32 sessionExpiry,
        bytes32 salt
    );

    /// @notice A channel's deposit grew.
    event ChannelToppedUp(bytes32 indexed channelId, address indexed from, uint256 amount, uint256 deposit);

    /// @notice The session key changed. The previous key stays valid until `previousValidUntil`.
    event SessionKeyChanged(
        bytes32 indexed channelId, address sessionKey, uint32 expiry, address previousKey, uint32 previousValidUntil
    );

    /// @notice A voucher was settled: each of its payees is now credited its cumulative amount.
    /// @dev Kept small because it is paid for on every settlement: the payees and amounts are the voucher's,
    /// in the transaction's calldata. When the deposit could not cover the voucher, SettlementCapped follows
    /// with what was actually credited.
    /// @param channelId The channel.
    /// @param settled The channel's total settled so far.
    /// @param playHash The play-receipt chain head the voucher committed to.
    event ChannelSettled(bytes32 indexed channelId, uint256 settled, bytes32 playHash);

    /// @notice The deposit ran out: payees were paid in order until it did. `credited` (cumulative, per payee)
    /// is the next settlement's prevAmounts; the shortfall stays owed and is paid by a later settlement after a top-up.
    event SettlementCapped(bytes32 indexed channelId, uint256[] credited);

    /// @notice A batch entry was skipped; `reason` is the selector of the error the single-settle path reverts with.
    event SettlementSkipped(bytes32 indexed channelId, uint256 index, bytes4 reason);

    /// @notice The payer asked to close; settlements are accepted until `closesAt`.
    event CloseRequested(bytes32 indexed channelId, uint32 closesAt);

    /// @notice The channel is final: `refund` went back to the payer.
    event ChannelClosed(bytes32 indexed channelId, uint256 settled, uint256 refund, bool cooperative);

    /// @notice A payee withdrew its balance.
    event Claimed(address indexed payee, address indexed token, address to, uint256 amount);

    /// @notice A payee's payout schedule for `token` was set (or cancelled: enabled false, all zero), with the
    /// values stored (the threshold rounded up, the max fee rounded down; see PayoutSchedule).
    event PayoutScheduleSet(
        address indexed payee,
        address indexed token,
        bool enabled,
        address recipient,
        uint256 threshold,
        uint32 period,
        uint256 maxFee
    );

    /// @notice Everything one payoutBatch did, in one record for the batch (as ERC-1155's TransferBatch): one entry
    /// per listed payee, in the order listed. A paid payee's whole balance left the contract: `amount` to its
    /// recipient and its fee to `submitter` (equivalent to a Claimed of amount + fee for the payee's books). A
    /// skipped payee was left untouched.
    /// @dev `entries` is a sequence of one- or four-word entries (docs/PROTOCOL.md §14.2). The first word holds the
    /// payee in bits 0..159, then:
    ///  - bits 160, 161 clear: paid; the payee itself received `amount` = bits 162..255 (< 2^94) and paid `fee`;
    ///  - bit 160 set: paid; three more words follow: `amount`, the fee this payee paid (its signed max fee, where
    ///    that is below `fee`), and the recipient (the payee itself, or the address it signed);
    ///  - bit 161 set: skipped; bits 224..255 are the selector of the reason (PayoutNotScheduled,
    ///    PayoutBelowThreshold or PayoutNotDue).
    /// No per-payee topic: the relay indexes payouts by payee from these records.
    /// @param token The token paid (address(0): ETH).
    /// @param submitter The caller, who received every paid entry's fee in one transfer after the payouts.
    /// @param fee The fee the batch asked for: what a one-word entry's payee paid.
    /// @param entries The entries, encoded as above.
    event PaidOutBatch(address indexed token, address indexed submitter, uint256 fee, bytes32[] entries);

    // -------------------------------------------------------------- functions

    /// @notice Open a channel funded by the caller.
    /// @param relay The relay that serves the channel and co-signs cooperative closes.
    /// @param token address(0) for ETH, else an allowed ERC-20 (pulled with transferFrom).
    /// @param amount The deposit; for ETH it must equal msg.value.
    /// @param salt Any value that makes the id unique for this payer, token and relay.
    /// @param sessionKey A second signer for vouchers (address(0) for none).
    /// @param sessionExpiry Unix time after which vouchers from `sessionKey` no longer settle.
    /// @return channelId The new channel's id.
    function open(
        address relay,
        address token,
        uint96 amount,
        bytes32 salt,
        address sessionKey,
        uint32 sessionExpiry
    ) external payable returns (bytes32 channelId);

    /// @notice Open a token channel in one transaction using an EIP-2612 permit signed by the caller.
    /// @dev The permit call is wrapped in try/catch: a front-run permit only makes it redundant.
    function openWithPermit(
        address relay,
        address token,
        uint96 amount,
        bytes32 salt,
        address sessionKey,
        uint32 sessionExpiry,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external returns (bytes32 channelId);

    /// @notice Add to an open channel's deposit. Anyone may top up; the refund still goes to the payer.
    function topUp(bytes32 channelId, uint96 amount) external payable;

    /// @notice Replace the channel's session key (address(0) to revoke). The previous key keeps settling for
    /// the rotation grace period so that a payer cannot dodge vouchers it already signed. Setting the same key
    /// again changes its expiry, but not to before the end of that grace (SessionKeyExpiryBelowGrace).
    /// @dev The rule every path keeps: once a key K was authorised with validity V, vouchers signed by K settle
    /// at least until min(V, t + keyRotationGrace), t being the time of any later change, whatever the payer
    /// does next (revoke, re-add K with a shorter expiry, rotate twice, in one block or one transaction). A key
    /// re-added while it is still the retired key holds both validities (see sessionKeyValidUntil); a second
    /// rotation while one is pending reverts (SessionKeyRotationPending), so the retired slot is never
    /// overwritten during a grace. Keys change only while the channel is open; channels never reopen.
    function setSessionKey(bytes32 channelId, address sessionKey, uint32 expiry) external;

    /// @notice The last second (inclusive) at which a voucher signed by `key` settles on this channel, as the
    /// contract judges it now: the later of the current key's expiry and the retired key's grace, for whichever
    /// of them `key` is; 0 if it is neither (or is the zero address). The payer's own signature always settles.
    /// @dev Later key changes can only keep or extend this bound up to min(itself, change time + grace); the relay
    /// uses it to refuse vouchers it could not settle and to schedule settlement before it passes.
    function sessionKeyValidUntil(bytes32 channelId, address key) external view returns (uint32 validUntil);

    /// @notice The channel's state as clients see it (status derived from the close window and the clock).
    function getChannel(bytes32 channelId) external view returns (ChannelView memory view_);

    /// @notice The rotated-out session key that still settles until `validUntil`, if any (zero address if none).
    function retiredSessionKey(bytes32 channelId) external view returns (address key, uint32 validUntil);

    /// @notice What `payee` can claim in `token` (address(0) for ETH).
    function claimable(address payee, address token) external view returns (uint256);

    /// @notice The id a channel opened with these parameters gets (ids also bind the chain id and this contract).
    function channelIdFor(address payer, address token, address relay, bytes32 salt) external view returns (bytes32);

    /// @notice The EIP-712 digest a payer or session key signs for this voucher.
    function voucherDigest(bytes32 channelId, address[] calldata payees, uint256[] calldata amounts, bytes32 playHash)
        external
        view
        returns (bytes32);

    /// @notice The EIP-712 digest a relay signs to consent to a cooperative close at `voucherDigest_`.
    function closeDigest(bytes32 channelId, bytes32 voucherDigest_) external view returns (bytes32);

    /// @notice The EIP-712 domain separator (rebuilt if the chain id ever changes).
    function domainSeparator() external view returns (bytes32);

    /// @notice The compact id of an allowed token (0 for ETH); reverts for tokens not allowed.
    function tokenIdOf(address token) external view returns (uint16);

    /// @notice Settle one voucher. Reverts with the reason if it is invalid; a stale voucher is a no-op. Only the
    /// channel's relay may settle, except in the second half of a close window (SettleNotAllowed).
    /// @return credited The amount newly credited to payees.
    function settle(SettleEntry calldata entry) external returns (uint256 credited);

    /// @notice Settle many vouchers; invalid entries (and channels the caller may not settle yet) are skipped
    /// with a SettlementSkipped event.
    /// @return credited The total newly credited across all entries.
    function settleBatch(SettleEntry[] calldata entries) external returns (uint256 credited);

    /// @notice The payer closes at once with the relay's signature (r, vs: EIP-2098 compact) over
    /// Close(channelId, voucherDigest): the final voucher is settled (skipped if it has no payees, in which
    /// case voucherDigest is zero) and the remainder refunded.
    function cooperativeClose(SettleEntry calldata finalVoucher, bytes32 r, bytes32 vs) external;

    /// @notice The payer starts the challenge window; vouchers can still be settled until it ends.
    function requestClose(bytes32 channelId) external;

    /// @notice After the challenge window, refund the unspent deposit to the payer and close the channel.
    function withdraw(bytes32 channelId) external;

    /// @notice Withdraw the caller's credited balance of `token` (address(0) for ETH) to `to`.
    /// @return amount The amount paid out.
    function claim(address token, address to) external returns (uint256 amount);

    /// @notice The gas-free entry point contract (ChainStreamGasless), created by this contract's constructor: the
    /// only caller of openFor, cooperativeCloseFor and setPayoutScheduleFor, which it calls after checking the
    /// signer's EIP-712 authorisation.
    function gasless() external view returns (address);

    /// @notice Open a channel for `payer` with deposit `amount` and pay `fee` of it on to `feeTo` (gasless contract
    /// only). The caller has already moved `amount + fee` tokens from the payer to this contract, in one
    /// transferFrom under the payer's signed authorisation, so nothing is pulled here. Same rules as open; the payer
    /// is `payer`; tokens only.
    function openFor(
        address payer,
        address relay,
        address token,
        uint96 amount,
        bytes32 salt,
        address sessionKey,
        uint32 sessionExpiry,
        uint96 fee,
        address feeTo
    ) external returns (bytes32 channelId);

    /// @notice cooperativeClose on behalf of `payer` (gasless contract only); the refund goes to the caller, which
    /// pays the submitter's signed fee out of it and the rest to the payer.
    /// @return refund The unspent deposit sent to the caller.
    function cooperativeCloseFor(address payer, SettleEntry calldata finalVoucher, bytes32 r, bytes32 vs)
        external
        returns (uint256 refund);

    /// @notice Set `payee`'s payout schedule for `token` (gasless contract only: it checks the payee's signature,
    /// or that the payee itself sent the transaction).
    function setPayoutScheduleFor(address payee, address token, PayoutSchedule calldata schedule) external;

    /// @notice Push the balances of `token` owed to `payees` that are due under their schedules, each to the
    /// payee or to the recipient it signed, minus min(fee, the payee's signed maxFee), which goes to the caller.
    /// Payees not due (or not scheduled) are skipped, not reverted; one PaidOutBatch records what happened to each. A transfer the recipient
    /// refuses (an ETH recipient that reverts, a token that blocks it) reverts the whole batch: the submitter
    /// simulates first and sends again without that payee, whose balance stays claimable. Anyone may call it. A
    /// payee listed twice is paid once (its balance is then empty).
    /// @return paid The total sent to payees and recipients (fees excluded).
    function payoutBatch(address token, address[] calldata payees, uint256 fee) external returns (uint256 paid);

    /// @notice A payee's payout schedule for `token` as stored (threshold rounded up, max fee rounded down; a
    /// cancelled schedule reads as all zero) and the time of its last payout (0 if none).
    function payoutSchedule(address payee, address token)
        external
        view
        returns (PayoutSchedule memory schedule, uint32 lastPaidAt);

    /// @notice Add an ERC-20 to the allowlist (owner only). Fee-on-transfer and rebasing tokens are unsupported,
    /// and so are tokens whose supply can reach 2^128 units (a payee's balance is kept in 128 bits).
    function allowToken(address token) external returns (uint16 tokenId);
}
