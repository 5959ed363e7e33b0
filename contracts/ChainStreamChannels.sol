// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {ChainStreamGasless} from "./ChainStreamGasless.sol";
import {IChainStreamChannels} from "./interfaces/IChainStreamChannels.sol";
import {PackedBalance} from "./libraries/PackedBalance.sol";
import {VoucherHashing} from "./libraries/VoucherHashing.sol";

/// @title ChainStreamChannels
/// @notice Escrowed one-to-many payment channels for pay-per-play music. See IChainStreamChannels for the
/// documentation of every function, error and event, and docs/PROTOCOL.md for the off-chain protocol.
/// @dev Trust rules this contract enforces:
///  - money leaves a channel only to payees named in a voucher the payer (or its session key) signed, never
///    more than each payee's signed cumulative amount, and never more than the deposit;
///  - the payer always gets `deposit - settled` back, after the challenge window or a cooperative close;
///  - a payee's credited balance can be withdrawn by that payee only.
/// Storage is packed so that settling a channel touches three slots and writes one.
contract ChainStreamChannels is IChainStreamChannels, EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @dev Channel state in three slots. `closesAt`: 0 = open, 1 = closed for good, else end of the window.
    struct Channel {
        // slot 0: read by every settlement
        address payer;
        uint16 tokenId;
        uint16 relayId;
        uint32 sessionExpiry;
        uint32 closesAt;
        // slot 1: the only slot a settlement writes; never zero after open (EMPTY_ROOT), so writes cost 2,900
        uint96 settled;
        bytes20 settledRoot;
        // slot 2
        uint96 deposit;
        address sessionKey;
    }

    /// @dev A session key that was rotated out and still settles until `validUntil`.
    struct RetiredKey {
        address key;
        uint32 validUntil;
    }

    uint32 private constant CLOSED = 1;
    uint256 private constant MAX_AMOUNT = type(uint96).max;
    /// @dev Low 128 bits of a balance slot: claimable + 1. Above them the last payout time and the payout schedule,
    /// kept in the slot a payout writes anyway so that its checks cost no storage access of their own (see
    /// PackedBalance).
    uint256 private constant BALANCE_MASK = PackedBalance.BALANCE_MASK;
    /// @dev PaidOutBatch entries (IChainStreamChannels.PaidOutBatch, docs/PROTOCOL.md §14.2): the first word holds the
    /// payee in its low 160 bits, then these flags. Literals, for inline assembly; the constructor checks the hashes.
    uint256 private constant ENTRY_EXTENDED = 0x0010000000000000000000000000000000000000000; // 1 << 160
    uint256 private constant ENTRY_SKIPPED = 0x0020000000000000000000000000000000000000000; // 1 << 161
    uint256 private constant ENTRY_FLAGS = 0x0030000000000000000000000000000000000000000; // both
    uint256 private constant ENTRY_AMOUNT_SHIFT = 162;
    uint256 private constant ENTRY_AMOUNT_LIMIT = 0x400000000000000000000000; // 1 << 94
    /// @dev A skipped entry's flags: ENTRY_SKIPPED | the reason's error selector << 224.
    uint256 private constant REASON_NOT_SCHEDULED = 0x3918e6cb00000000000000020000000000000000000000000000000000000000;
    uint256 private constant REASON_BELOW_THRESHOLD = 0x8a18b7d300000000000000020000000000000000000000000000000000000000;
    uint256 private constant REASON_NOT_DUE = 0xc002b68a00000000000000020000000000000000000000000000000000000000;
    /// @dev PaidOutBatch's topic, and SafeERC20FailedOperation's selector.
    bytes32 private constant PAID_OUT_BATCH = 0xd695f52b37588be11f5a894fd8aa07d6c0bf9916836e69c8c71e6164d9d54d42;
    uint256 private constant SAFE_ERC20_FAILED = 0x5274afe7;

    /// @notice Commitment to "nothing settled yet": settledRoot(hash of no payees, hash of no amounts).
    bytes20 public constant EMPTY_ROOT = bytes20(keccak256(abi.encode(keccak256(""), keccak256(""))));

    /// @notice Seconds between requestClose and the earliest withdraw.
    uint32 public immutable challengePeriod;
    /// @notice Seconds a rotated-out session key keeps settling (capped by its own expiry).
    uint32 public immutable keyRotationGrace;
    /// @notice May add ERC-20s to the allowlist; has no other power (cannot touch channels or balances).
    address public immutable tokenAdmin;

    mapping(bytes32 channelId => Channel) private _channels;
    mapping(bytes32 channelId => RetiredKey) private _retiredKeys;
    /// @dev Stored as claimable + 1 once a payee was first credited (or set a schedule), so later credits and claims
    /// never write a zero slot back to non-zero (20,000 gas) — the 0xSplits trick without keeping anyone's wei. The
    /// upper 128 bits hold the last payout time and the payout schedule (PackedBalance).
    mapping(address payee => mapping(uint16 tokenId => uint256)) private _balances;

    mapping(address token => uint16) private _tokenIds;
    mapping(uint16 tokenId => address) private _tokens;
    uint16 public tokenCount;
    mapping(address relay => uint16) private _relayIds;
    mapping(uint16 relayId => address) private _relays;
    /// @notice Relays given a compact id so far (at most 65,535; later relays are stored per channel).
    uint16 public relayCount;
    /// @dev The relay of a channel opened after the 65,535 compact ids ran out (its relayId is 0). Compact ids only
    /// save the first channels of a relay a storage slot; they are not needed to use a relay, so registering
    /// relays in bulk (anyone can: a 1-wei channel naming any address) cannot lock new relays out.
    mapping(bytes32 channelId => address) private _channelRelays;

    /// @dev Read only for a schedule whose recipient is not the payee (PackedBalance's recipient bit).
    mapping(address payee => mapping(uint16 tokenId => address)) private _payoutRecipients;

    /// @inheritdoc IChainStreamChannels
    address public immutable gasless;

    /// @param challengePeriod_ Seconds of the unilateral-close challenge window (e.g. 86400).
    /// @param keyRotationGrace_ Seconds a rotated-out session key keeps settling (e.g. 3600).
    /// @param tokenAdmin_ The address allowed to add ERC-20s.
    constructor(uint32 challengePeriod_, uint32 keyRotationGrace_, address tokenAdmin_) EIP712("ChainStream", "1") {
        challengePeriod = challengePeriod_;
        keyRotationGrace = keyRotationGrace_;
        tokenAdmin = tokenAdmin_;
        gasless = address(new ChainStreamGasless(this));
        // The literals payoutBatch's assembly uses (costs deployment gas only).
        assert(
            PAID_OUT_BATCH == PaidOutBatch.selector
                && REASON_NOT_SCHEDULED == ENTRY_SKIPPED | uint256(uint32(PayoutNotScheduled.selector)) << 224
                && REASON_BELOW_THRESHOLD == ENTRY_SKIPPED | uint256(uint32(PayoutBelowThreshold.selector)) << 224
                && REASON_NOT_DUE == ENTRY_SKIPPED | uint256(uint32(PayoutNotDue.selector)) << 224
                && SAFE_ERC20_FAILED == uint32(SafeERC20.SafeERC20FailedOperation.selector)
        );
    }

    modifier onlyGasless() {
        if (msg.sender != gasless) revert NotGaslessForwarder(msg.sender);
        _;
    }

    // ----------------------------------------------------------------- admin

    /// @inheritdoc IChainStreamChannels
    function allowToken(address token) external returns (uint16 tokenId) {
        if (msg.sender != tokenAdmin) revert NotTokenAdmin(msg.sender);
        if (token == address(0)) revert TokenNotAllowed(token);
        if (_tokenIds[token] != 0) revert TokenAlreadyAllowed(token);
        tokenId = ++tokenCount;
        _tokenIds[token] = tokenId;
        _tokens[tokenId] = token;
        emit TokenAllowed(token, tokenId);
    }

    // ------------------------------------------------------------- open/fund

    /// @inheritdoc IChainStreamChannels
    function open(
        address relay,
        address token,
        uint96 amount,
        bytes32 salt,
        address sessionKey,
        uint32 sessionExpiry
    ) external payable nonReentrant returns (bytes32 channelId) {
        uint16 tokenId;
        (channelId, tokenId) = _open(msg.sender, relay, token, amount, salt, sessionKey, sessionExpiry);
        _pull(tokenId, amount);
    }

    /// @inheritdoc IChainStreamChannels
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
    ) external nonReentrant returns (bytes32 channelId) {
        // A permit front-run by someone else leaves the allowance in place; transferFrom then decides.
        try IERC20Permit(token).permit(msg.sender, address(this), amount, deadline, v, r, s) {} catch {}
        uint16 tokenId;
        (channelId, tokenId) = _open(msg.sender, relay, token, amount, salt, sessionKey, sessionExpiry);
        _pull(tokenId, amount);
    }

    /// @inheritdoc IChainStreamChannels
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
    ) external onlyGasless nonReentrant returns (bytes32 channelId) {
        // No pull: the gasless contract already moved amount + fee from the payer to this contract, in one
        // transferFrom, under the payer's signature. The fee leaves after the channel is recorded.
        uint16 tokenId;
        (channelId, tokenId) = _open(payer, relay, token, amount, salt, sessionKey, sessionExpiry);
        if (tokenId == 0) revert TokenNotAllowed(address(0)); // never reached: the gasless contract refuses ETH
        if (fee != 0) _push(tokenId, feeTo, fee);
    }

    /// @inheritdoc IChainStreamChannels
    function topUp(bytes32 channelId, uint96 amount) external payable nonReentrant {
        Channel storage ch = _channels[channelId];
        if (ch.payer == address(0)) revert ChannelNotFound(channelId);
        if (ch.closesAt != 0) revert ChannelNotOpen(channelId, ch.closesAt);
        if (amount == 0) revert ChannelDepositZero();
        uint256 newDeposit = uint256(ch.deposit) + amount;
        if (newDeposit > MAX_AMOUNT) revert ChannelDepositOverflow(channelId, newDeposit);
        ch.deposit = uint96(newDeposit);
        emit ChannelToppedUp(channelId, msg.sender, amount, newDeposit);
        _pull(ch.tokenId, amount);
    }

    /// @inheritdoc IChainStreamChannels
    function setSessionKey(bytes32 channelId, address sessionKey, uint32 expiry) external {
        Channel storage ch = _channels[channelId];
        _requirePayer(ch, channelId, msg.sender);
        if (ch.closesAt != 0) revert ChannelNotOpen(channelId, ch.closesAt);
        if (sessionKey != address(0) && expiry <= block.timestamp) revert SessionKeyExpiryInPast(expiry);
        address previous = ch.sessionKey;
        uint32 previousValidUntil;
        if (previous != address(0) && previous == sessionKey) {
            // Shortening the same key's life would void its unsettled vouchers without a rotation's grace.
            uint256 graceEnd = block.timestamp + keyRotationGrace;
            uint32 minimum = ch.sessionExpiry < graceEnd ? ch.sessionExpiry : uint32(graceEnd);
            if (expiry < minimum) revert SessionKeyExpiryBelowGrace(channelId, expiry, minimum);
        }
        if (previous != address(0) && previous != sessionKey) {
            RetiredKey storage retired = _retiredKeys[channelId];
            if (retired.key != address(0) && retired.validUntil >= block.timestamp) {
                revert SessionKeyRotationPending(channelId, retired.validUntil);
            }
            uint256 graceEnd = block.timestamp + keyRotationGrace;
            previousValidUntil = ch.sessionExpiry < graceEnd ? ch.sessionExpiry : uint32(graceEnd);
            retired.key = previous;
            retired.validUntil = previousValidUntil;
        }
        ch.sessionKey = sessionKey;
        ch.sessionExpiry = sessionKey == address(0) ? 0 : expiry;
        emit SessionKeyChanged(channelId, sessionKey, ch.sessionExpiry, previous, previousValidUntil);
    }

    // ---------------------------------------------------------------- settle

    /// @inheritdoc IChainStreamChannels
    function settle(SettleEntry calldata entry) external returns (uint256 credited) {
        (credited,) = _settle(entry, true, false);
    }

    /// @inheritdoc IChainStreamChannels
    function settleBatch(SettleEntry[] calldata entries) external returns (uint256 credited) {
        uint256 count = entries.length;
        for (uint256 i; i < count; ++i) {
            (uint256 c, bytes4 skipped) = _settle(entries[i], false, false);
            if (skipped != bytes4(0)) emit SettlementSkipped(entries[i].channelId, i, skipped);
            // Cannot overflow: each entry credits at most one channel's deposit (< 2^96).
            unchecked {
                credited += c;
            }
        }
    }

    // ----------------------------------------------------------------- close

    /// @inheritdoc IChainStreamChannels
    function cooperativeClose(SettleEntry calldata finalVoucher, bytes32 r, bytes32 vs) external nonReentrant {
        _cooperativeClose(msg.sender, finalVoucher, r, vs, msg.sender);
    }

    /// @inheritdoc IChainStreamChannels
    function cooperativeCloseFor(address payer, SettleEntry calldata finalVoucher, bytes32 r, bytes32 vs)
        external
        onlyGasless
        nonReentrant
        returns (uint256 refund)
    {
        refund = _cooperativeClose(payer, finalVoucher, r, vs, msg.sender);
    }

    /// @dev The cooperative close of `payer`'s channel; the refund goes to `refundTo`.
    function _cooperativeClose(
        address payer,
        SettleEntry calldata finalVoucher,
        bytes32 r,
        bytes32 vs,
        address refundTo
    ) private returns (uint256 refund) {
        bytes32 channelId = finalVoucher.channelId;
        Channel storage ch = _channels[channelId];
        _requirePayer(ch, channelId, payer);
        _requireSettleable(ch.closesAt, channelId);
        bytes32 voucherDigest = finalVoucher.payees.length == 0
            ? bytes32(0)
            : _voucherDigest(
                channelId,
                VoucherHashing.hashWords(_offset(finalVoucher.payees), finalVoucher.payees.length),
                VoucherHashing.hashWords(_offset(finalVoucher.amounts), finalVoucher.amounts.length),
                finalVoucher.playHash
            );
        bytes32 closeDigest = _hashTypedDataV4(VoucherHashing.closeStructHash(channelId, voucherDigest));
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(closeDigest, r, vs);
        if (err != ECDSA.RecoverError.NoError || !_isRelay(signer, ch.relayId, channelId)) {
            revert CloseInvalidRelaySignature(channelId, signer);
        }
        if (voucherDigest != bytes32(0)) _settle(finalVoucher, true, true); // the relay consented: its Close
        refund = _finalize(ch, channelId, true, refundTo);
    }

    /// @inheritdoc IChainStreamChannels
    function requestClose(bytes32 channelId) external {
        Channel storage ch = _channels[channelId];
        _requirePayer(ch, channelId, msg.sender);
        if (ch.closesAt != 0) revert ChannelNotOpen(channelId, ch.closesAt);
        uint32 closesAt = uint32(block.timestamp + challengePeriod);
        ch.closesAt = closesAt;
        emit CloseRequested(channelId, closesAt);
    }

    /// @inheritdoc IChainStreamChannels
    function withdraw(bytes32 channelId) external nonReentrant {
        Channel storage ch = _channels[channelId];
        if (ch.payer == address(0)) revert ChannelNotFound(channelId);
        uint32 closesAt = ch.closesAt;
        if (closesAt <= CLOSED || block.timestamp < closesAt) revert ChannelWindowNotOver(channelId, closesAt);
        _finalize(ch, channelId, false, ch.payer);
    }

    // ----------------------------------------------------------------- claim

    /// @inheritdoc IChainStreamChannels
    function claim(address token, address to) external nonReentrant returns (uint256 amount) {
        if (to == address(0)) revert ClaimToZero();
        uint16 tokenId = _tokenIdOf(token);
        uint256 stored = _balances[msg.sender][tokenId];
        uint256 balance = stored & BALANCE_MASK;
        if (balance <= 1) revert NothingToClaim(msg.sender, token);
        // Cannot underflow: balance > 1. Leaves 1 and the last payout time.
        unchecked {
            amount = balance - 1;
            _balances[msg.sender][tokenId] = stored - amount;
        }
        emit Claimed(msg.sender, token, to, amount);
        _push(tokenId, to, amount);
    }

    // --------------------------------------------------------------- payouts

    /// @inheritdoc IChainStreamChannels
    function setPayoutScheduleFor(address payee, address token, PayoutSchedule calldata schedule)
        external
        onlyGasless
    {
        uint16 tokenId = _tokenIdOf(token);
        if (schedule.enabled && schedule.threshold == 0 && schedule.period == 0) revert PayoutScheduleEmpty(payee);
        bool hasRecipient = schedule.enabled && schedule.recipient != address(0) && schedule.recipient != payee;
        uint256 kept = _balances[payee][tokenId] & PackedBalance.KEEP_MASK;
        // A written slot keeps its +1 (credits add to the low bits of any non-zero slot, see _credit).
        if (kept & BALANCE_MASK == 0) kept |= 1;
        uint256 word = schedule.enabled
            ? kept | PackedBalance.packSchedule(hasRecipient, schedule.period, schedule.threshold, schedule.maxFee)
            : kept;
        _balances[payee][tokenId] = word;
        _payoutRecipients[payee][tokenId] = hasRecipient ? schedule.recipient : address(0);
        // The effective terms: the threshold rounded up, the max fee rounded down (PackedBalance).
        emit PayoutScheduleSet(
            payee,
            token,
            schedule.enabled,
            hasRecipient ? schedule.recipient : address(0),
            PackedBalance.threshold(word),
            uint32(PackedBalance.period(word)),
            PackedBalance.maxFee(word)
        );
    }

    /// @inheritdoc IChainStreamChannels
    function payoutBatch(address token, address[] calldata payees, uint256 fee)
        external
        nonReentrant
        returns (uint256 paid)
    {
        uint16 tokenId = _tokenIdOf(token);
        // The PaidOutBatch record, ABI-encoded in place as (fee, entries) — [fee][0x40][entry count][entries...] — is
        // written as the payees are checked, one entry per payee in order; its words then drive the transfers, so
        // the log says what was sent. Memory for the longest record (four words per payee) is reserved first.
        uint256 record;
        assembly ("memory-safe") {
            record := mload(0x40)
            mstore(record, fee)
            mstore(add(record, 0x20), 0x40)
            mstore(0x40, add(add(record, 0x60), shl(7, payees.length)))
        }
        // Checks and effects for the whole batch first: no storage is written once a transfer has run.
        (uint256 end, uint256 fees) = _debitDue(payees, tokenId, fee, record + 0x60);
        assembly ("memory-safe") {
            mstore(add(record, 0x40), shr(5, sub(end, add(record, 0x60)))) // the entry count, in words
            mstore(0x40, end)
            log3(record, sub(end, record), PAID_OUT_BATCH, and(token, 0xffffffffffffffffffffffffffffffffffffffff), caller())
        }
        paid = tokenId == 0 ? _payEthEntries(record + 0x60, end) : _payTokenEntries(token, record + 0x60, end);
        if (fees != 0) _push(tokenId, msg.sender, fees);
    }

    /// @dev For each payee in order: reads its balance word (PackedBalance) once and, if a payout is due under the
    /// word's schedule — enabled, claimable >= threshold and > min(fee, maxFee), period elapsed since the last
    /// payout — empties the balance and records the time in the same slot; appends the payee's PaidOutBatch entry
    /// at `end` either way. Returns the record's new end and the sum of the fees. Assembly because this loop is
    /// most of a payout's own cost (issue 13); the bit positions are PackedBalance's.
    function _debitDue(address[] calldata payees, uint16 tokenId, uint256 fee, uint256 end)
        private
        returns (uint256, uint256 fees)
    {
        assembly ("memory-safe") {
            /// m * 10^e of a decimal float `m | e << 26` (PackedBalance._decode)
            function decimal(packed) -> value {
                value := mul(and(packed, 0x3ffffff), exp(10, shr(26, packed)))
            }
            for {
                let p := payees.offset
                let done := add(p, shl(5, payees.length))
            } lt(p, done) { p := add(p, 0x20) } {
                let payee := calldataload(p)
                if shr(160, payee) { revert(0, 0) } // not an address: refused as the ABI decoder would
                mstore(0x00, payee)
                mstore(0x20, _balances.slot)
                mstore(0x20, keccak256(0x00, 0x40))
                mstore(0x00, tokenId) // clean: _tokenIdOf's uint16, read from storage
                let slot := keccak256(0x00, 0x40) // of _balances[payee][tokenId], for the read and the write
                let word := sload(slot)
                let payeeFee := decimal(shr(225, word)) // the max fee, bits 225..255
                if lt(fee, payeeFee) { payeeFee := fee }
                let reason := REASON_NOT_SCHEDULED
                if and(word, 0x10000000000000000000000000000000000000000) { // ENABLED_BIT, 1 << 160
                    let owed := sub(and(word, 0xffffffffffffffffffffffffffffffff), 1) // the low 128 bits: claimable + 1
                    reason := REASON_BELOW_THRESHOLD // the threshold: bits 194..224
                    if iszero(or(lt(owed, decimal(and(shr(194, word), 0x7fffffff))), iszero(gt(owed, payeeFee)))) {
                        reason := 0
                        let period := and(shr(162, word), 0xffffffff) // bits 162..193
                        // the last payout (bits 128..159) + period: below 2^33, cannot overflow
                        if and(gt(period, 0), lt(timestamp(), add(and(shr(128, word), 0xffffffff), period))) {
                            reason := REASON_NOT_DUE
                        }
                    }
                }
                switch reason
                case 0 {
                    let amount := sub(sub(and(word, 0xffffffffffffffffffffffffffffffff), 1), payeeFee) // owed > fee
                    let to := payee
                    if and(word, 0x20000000000000000000000000000000000000000) { // RECIPIENT_BIT, 1 << 161
                        mstore(0x00, payee)
                        mstore(0x20, _payoutRecipients.slot)
                        mstore(0x20, keccak256(0x00, 0x40))
                        mstore(0x00, tokenId)
                        to := sload(keccak256(0x00, 0x40))
                    }
                    // the balance emptied (its +1 stays), the time recorded (bits 128..159), the schedule kept
                    sstore(slot, or(or(and(word, not(0xffffffffffffffffffffffffffffffffffffffff)),
                                       shl(128, and(timestamp(), 0xffffffff))), 1))
                    fees := add(fees, payeeFee) // a sum of balances below 2^128: cannot overflow
                    switch and(lt(amount, ENTRY_AMOUNT_LIMIT), and(eq(payeeFee, fee), eq(to, payee)))
                    case 1 {
                        mstore(end, or(payee, shl(ENTRY_AMOUNT_SHIFT, amount)))
                        end := add(end, 0x20)
                    }
                    default {
                        mstore(end, or(payee, ENTRY_EXTENDED))
                        mstore(add(end, 0x20), amount)
                        mstore(add(end, 0x40), payeeFee)
                        mstore(add(end, 0x60), to)
                        end := add(end, 0x80)
                    }
                }
                default {
                    mstore(end, or(payee, reason))
                    end := add(end, 0x20)
                }
            }
        }
        return (end, fees);
    }

    /// @dev Pays every paid entry in [ptr, end) in ETH; a recipient that refuses reverts the batch (PayoutFailed).
    /// Returns the total paid.
    function _payEthEntries(uint256 ptr, uint256 end) private returns (uint256 paid) {
        while (ptr < end) {
            uint256 head;
            uint256 to;
            uint256 amount;
            assembly ("memory-safe") {
                head := mload(ptr)
                to := and(head, 0xffffffffffffffffffffffffffffffffffffffff)
                amount := shr(ENTRY_AMOUNT_SHIFT, head)
                if and(head, ENTRY_EXTENDED) {
                    amount := mload(add(ptr, 0x20))
                    to := mload(add(ptr, 0x60))
                    ptr := add(ptr, 0x60)
                }
                ptr := add(ptr, 0x20)
            }
            if (head & ENTRY_SKIPPED == 0) {
                paid += amount;
                (bool ok,) = address(uint160(to)).call{value: amount}("");
                if (!ok) revert PayoutFailed(address(uint160(to)), amount);
            }
        }
    }

    /// @dev Pays every paid entry in [ptr, end) in `token` with SafeERC20.safeTransfer's rule (a revert is bubbled
    /// up; no return data is accepted from a contract, else the token must return true: SafeERC20FailedOperation),
    /// without its memory allocation: the call data is written at `end` (past the record, reused for every
    /// transfer). Returns the total paid.
    function _payTokenEntries(address token, uint256 ptr, uint256 end) private returns (uint256 paid) {
        assembly ("memory-safe") {
            token := and(token, 0xffffffffffffffffffffffffffffffffffffffff)
            mstore(end, shl(224, 0xa9059cbb)) // transfer(address,uint256)
            let toWord := add(end, 4)
            let amountWord := add(end, 36)
            for {} lt(ptr, end) {} {
                let head := mload(ptr)
                ptr := add(ptr, 0x20)
                switch and(head, ENTRY_FLAGS)
                case 0 {
                    mstore(toWord, and(head, 0xffffffffffffffffffffffffffffffffffffffff))
                    mstore(amountWord, shr(ENTRY_AMOUNT_SHIFT, head))
                }
                case 0x0010000000000000000000000000000000000000000 { // ENTRY_EXTENDED
                    mstore(amountWord, mload(ptr))
                    mstore(toWord, mload(add(ptr, 0x40)))
                    ptr := add(ptr, 0x60)
                }
                default { continue } // skipped
                paid := add(paid, mload(amountWord)) // a sum of balances below 2^128: cannot overflow
                if iszero(call(gas(), token, 0, end, 68, 0, 0x20)) {
                    returndatacopy(end, 0, returndatasize())
                    revert(end, returndatasize())
                }
                // true returned, or nothing returned by a contract (a stale mload(0) needs returndatasize > 31)
                if iszero(and(gt(returndatasize(), 31), eq(mload(0), 1))) {
                    if or(returndatasize(), iszero(extcodesize(token))) {
                        mstore(0, shl(224, SAFE_ERC20_FAILED))
                        mstore(4, token)
                        revert(0, 0x24)
                    }
                }
            }
        }
    }

    /// @inheritdoc IChainStreamChannels
    function payoutSchedule(address payee, address token)
        external
        view
        returns (PayoutSchedule memory schedule, uint32 lastPaidAt)
    {
        uint16 tokenId = _tokenIdOf(token);
        uint256 word = _balances[payee][tokenId];
        uint256 threshold = PackedBalance.threshold(word);
        schedule = PayoutSchedule({
            enabled: PackedBalance.enabled(word),
            recipient: PackedBalance.hasRecipient(word) ? _payoutRecipients[payee][tokenId] : address(0),
            // A signed threshold within 1.5e-7 of 2^96 can round up past it: shown as the uint96 maximum.
            threshold: threshold > type(uint96).max ? type(uint96).max : uint96(threshold),
            period: uint32(PackedBalance.period(word)),
            maxFee: uint64(PackedBalance.maxFee(word))
        });
        lastPaidAt = uint32(PackedBalance.paidAt(word));
    }

    // ----------------------------------------------------------------- views

    /// @inheritdoc IChainStreamChannels
    function getChannel(bytes32 channelId) external view returns (ChannelView memory view_) {
        Channel storage ch = _channels[channelId];
        view_.payer = ch.payer;
        view_.token = _tokens[ch.tokenId];
        view_.relay = _relayOf(ch.relayId, channelId);
        view_.deposit = ch.deposit;
        view_.settled = ch.settled;
        view_.sessionKey = ch.sessionKey;
        view_.sessionExpiry = ch.sessionExpiry;
        view_.closesAt = ch.closesAt;
        view_.settledRoot = ch.settledRoot;
        view_.status = _status(ch);
    }

    /// @inheritdoc IChainStreamChannels
    function sessionKeyValidUntil(bytes32 channelId, address key) external view returns (uint32 validUntil) {
        if (key == address(0)) return 0;
        Channel storage ch = _channels[channelId];
        if (key == ch.sessionKey) validUntil = ch.sessionExpiry;
        RetiredKey storage retired = _retiredKeys[channelId];
        if (key == retired.key && retired.validUntil > validUntil) validUntil = retired.validUntil;
    }

    /// @inheritdoc IChainStreamChannels
    function retiredSessionKey(bytes32 channelId) external view returns (address key, uint32 validUntil) {
        RetiredKey storage retired = _retiredKeys[channelId];
        return (retired.key, retired.validUntil);
    }

    /// @inheritdoc IChainStreamChannels
    function claimable(address payee, address token) external view returns (uint256) {
        return PackedBalance.claimable(_balances[payee][_tokenIdOf(token)]);
    }

    /// @inheritdoc IChainStreamChannels
    function channelIdFor(address payer, address token, address relay, bytes32 salt) public view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, address(this), payer, token, relay, salt));
    }

    /// @inheritdoc IChainStreamChannels
    function voucherDigest(bytes32 channelId, address[] calldata payees, uint256[] calldata amounts, bytes32 playHash)
        external
        view
        returns (bytes32)
    {
        return _voucherDigest(
            channelId, VoucherHashing.hashWords(_offset(payees), payees.length), VoucherHashing.hashWords(_offset(amounts), amounts.length), playHash
        );
    }

    /// @inheritdoc IChainStreamChannels
    function closeDigest(bytes32 channelId, bytes32 voucherDigest_) external view returns (bytes32) {
        return _hashTypedDataV4(VoucherHashing.closeStructHash(channelId, voucherDigest_));
    }

    /// @inheritdoc IChainStreamChannels
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @inheritdoc IChainStreamChannels
    function tokenIdOf(address token) external view returns (uint16) {
        return _tokenIdOf(token);
    }

    // -------------------------------------------------------------- internal

    function _open(
        address payer,
        address relay,
        address token,
        uint96 amount,
        bytes32 salt,
        address sessionKey,
        uint32 sessionExpiry
    ) private returns (bytes32 channelId, uint16 tokenId) {
        if (relay == address(0)) revert ChannelRelayZero();
        if (amount == 0) revert ChannelDepositZero();
        if (sessionKey != address(0) && sessionExpiry <= block.timestamp) {
            revert SessionKeyExpiryInPast(sessionExpiry);
        }
        tokenId = _tokenIdOf(token);
        channelId = channelIdFor(payer, token, relay, salt);
        Channel storage ch = _channels[channelId];
        if (ch.payer != address(0)) revert ChannelExists(channelId);
        ch.payer = payer;
        ch.tokenId = tokenId;
        uint16 relayId = _relayIdOf(relay);
        ch.relayId = relayId;
        if (relayId == 0) _channelRelays[channelId] = relay; // compact ids exhausted
        ch.sessionExpiry = sessionKey == address(0) ? 0 : sessionExpiry;
        ch.settledRoot = EMPTY_ROOT;
        ch.deposit = amount;
        ch.sessionKey = sessionKey;
        emit ChannelOpened(channelId, payer, relay, token, amount, sessionKey, ch.sessionExpiry, salt);
    }

    /// @dev Settles one entry. With `strict` it reverts with the reason; otherwise it returns the reason's
    /// selector and changes nothing, so one bad entry cannot sink a batch. Every check runs before any write.
    function _settle(SettleEntry calldata e, bool strict, bool relayConsented)
        private
        returns (uint256 credited, bytes4 skipped)
    {
        bytes32 channelId = e.channelId;
        Channel memory ch = _channels[channelId];
        if (ch.payer == address(0)) {
            return (0, _fail(strict, abi.encodeWithSelector(ChannelNotFound.selector, channelId)));
        }
        if (ch.closesAt != 0 && block.timestamp >= ch.closesAt) {
            return (0, _fail(strict, abi.encodeWithSelector(ChannelNotSettleable.selector, channelId, ch.closesAt)));
        }
        if (!relayConsented && msg.sender != _relays[ch.relayId]) {
            // The payer's signature alone also signs vouchers the relay never accepted (paying the payer, say):
            // settled first, they would void what the relay accepted and not yet settled. So only the relay
            // settles, until the second half of a close window (a relay gone for good cannot block the payer).
            // A channel without a compact relay id (relayId 0) stores its relay: looked up only here, off the
            // steady path, so that settling channels with an id costs nothing more.
            uint256 opensAt = ch.closesAt == 0 ? 0 : ch.closesAt - challengePeriod / 2;
            if ((opensAt == 0 || block.timestamp < opensAt) && !_isRelay(msg.sender, ch.relayId, channelId)) {
                return (0, _fail(strict, abi.encodeWithSelector(SettleNotAllowed.selector, channelId, msg.sender,
                                                                 uint32(opensAt))));
            }
        }
        address[] calldata payees = e.payees;
        uint256[] calldata amounts = e.amounts;
        uint256[] calldata prevAmounts = e.prevAmounts;
        uint256 n = payees.length;
        uint256 k = prevAmounts.length;
        if (amounts.length != n) {
            return (0, _fail(strict, abi.encodeWithSelector(VoucherLengthMismatch.selector, channelId, n, amounts.length, k)));
        }

        // Pass 1 (reads only): totals, the 96-bit range, and the first payee whose amount fell.
        uint256 total;
        uint256 prevTotal;
        uint256 firstFall = type(uint256).max;
        for (uint256 i; i < n; ++i) {
            uint256 amount = amounts[i];
            if (amount > MAX_AMOUNT) {
                return (0, _fail(strict, abi.encodeWithSelector(VoucherAmountOverflow.selector, channelId)));
            }
            // Cannot overflow: at most n values below 2^96 each.
            unchecked {
                total += amount;
                if (i < k) {
                    uint256 prev = prevAmounts[i];
                    prevTotal += prev;
                    if (amount < prev && firstFall == type(uint256).max) firstFall = i;
                }
            }
        }
        if (total <= ch.settled || ch.settled == ch.deposit) {
            // Stale, duplicate, or nothing left to pay: an idempotent no-op (checked before the prefix length,
            // so an older voucher with fewer payees than the settled state is a no-op too, not an error).
            return (0, strict ? bytes4(0) : VoucherStale.selector);
        }
        if (k > n) {
            return (0, _fail(strict, abi.encodeWithSelector(VoucherLengthMismatch.selector, channelId, n, n, k)));
        }

        bytes32 payeesHash = VoucherHashing.hashWords(_offset(payees), n);
        bytes32 amountsHash = VoucherHashing.hashWords(_offset(amounts), n);
        {
            bytes32 prevPayeesHash = k == n ? payeesHash : VoucherHashing.hashWords(_offset(payees), k);
            bytes20 prevRoot = VoucherHashing.settledRoot(prevPayeesHash, VoucherHashing.hashWords(_offset(prevAmounts), k));
            if (prevRoot != ch.settledRoot || prevTotal != ch.settled) {
                return (0, _fail(strict, abi.encodeWithSelector(VoucherPrevStateMismatch.selector, channelId, ch.settledRoot)));
            }
        }
        if (firstFall != type(uint256).max) {
            return (0, _fail(strict, abi.encodeWithSelector(VoucherNotMonotonic.selector, channelId, firstFall)));
        }
        {
            bytes32 digest = _voucherDigest(channelId, payeesHash, amountsHash, e.playHash);
            (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, e.r, e.vs);
            if (err != ECDSA.RecoverError.NoError) {
                return (0, _fail(strict, abi.encodeWithSelector(VoucherInvalidSignature.selector, channelId)));
            }
            if (signer != ch.payer && !_isSessionKey(ch, channelId, signer)) {
                return (0, _fail(strict, abi.encodeWithSelector(VoucherUnauthorizedSigner.selector, channelId, signer)));
            }
        }

        // Effects. prevAmounts sum to ch.settled, so the deltas sum to total - settled; when that exceeds what is
        // left of the deposit, payees are paid in order until it runs out.
        uint256 available = ch.deposit - ch.settled;
        uint16 tokenId = ch.tokenId;
        Channel storage stored = _channels[channelId];
        if (total - ch.settled <= available) {
            for (uint256 i; i < n; ++i) {
                // Cannot underflow: pass 1 found no amount below its prev.
                uint256 delta;
                unchecked {
                    delta = amounts[i] - (i < k ? prevAmounts[i] : 0);
                }
                if (delta != 0) _credit(payees[i], tokenId, delta);
            }
            credited = total - ch.settled;
            stored.settled = uint96(total);
            stored.settledRoot = VoucherHashing.settledRoot(payeesHash, amountsHash);
            emit ChannelSettled(channelId, total, e.playHash);
        } else {
            uint256[] memory paid = new uint256[](n);
            for (uint256 i; i < n; ++i) {
                uint256 prev = i < k ? prevAmounts[i] : 0;
                uint256 delta = amounts[i] - prev;
                if (delta > available) delta = available;
                available -= delta;
                paid[i] = prev + delta;
                if (delta != 0) _credit(payees[i], tokenId, delta);
            }
            credited = ch.deposit - ch.settled;
            stored.settled = ch.deposit;
            stored.settledRoot = VoucherHashing.settledRoot(payeesHash, keccak256(abi.encodePacked(paid)));
            emit ChannelSettled(channelId, ch.deposit, e.playHash);
            emit SettlementCapped(channelId, paid);
        }
    }

    /// @dev The calldata offset of an array's first element.
    function _offset(uint256[] calldata list) private pure returns (uint256 offset) {
        assembly ("memory-safe") {
            offset := list.offset
        }
    }

    function _offset(address[] calldata list) private pure returns (uint256 offset) {
        assembly ("memory-safe") {
            offset := list.offset
        }
    }

    /// @dev A key is judged by every validity it holds, never by the latest alone: the current key's expiry and,
    /// independently, the retired key's grace. A key retired and then set again (S -> 0 -> S with a short
    /// expiry, in one block or one transaction) is both, and keeps its grace (security review, issue 8).
    /// The current key is checked first so that a valid current key costs no extra storage read.
    function _isSessionKey(Channel memory ch, bytes32 channelId, address signer) private view returns (bool) {
        if (signer == ch.sessionKey && block.timestamp <= ch.sessionExpiry) return true;
        RetiredKey storage retired = _retiredKeys[channelId];
        return signer == retired.key && block.timestamp <= retired.validUntil;
    }

    function _credit(address payee, uint16 tokenId, uint256 delta) private {
        uint256 stored = _balances[payee][tokenId];
        // Cannot overflow the low 128 bits: a payee's credits are bounded by the token's supply (< 2^128 for
        // allowed tokens, see allowToken), so the payout time and schedule above them are never touched by the
        // addition. A non-zero slot always has its +1 (setPayoutScheduleFor keeps it so).
        unchecked {
            _balances[payee][tokenId] = (stored == 0 ? 1 : stored) + delta;
        }
    }

    function _finalize(Channel storage ch, bytes32 channelId, bool cooperative, address refundTo)
        private
        returns (uint256 refund)
    {
        uint256 settled = ch.settled;
        refund = ch.deposit - settled;
        ch.closesAt = CLOSED;
        emit ChannelClosed(channelId, settled, refund, cooperative);
        if (refund != 0) _push(ch.tokenId, refundTo, refund);
    }

    function _voucherDigest(bytes32 channelId, bytes32 payeesHash, bytes32 amountsHash, bytes32 playHash)
        private
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(VoucherHashing.voucherStructHash(channelId, payeesHash, amountsHash, playHash));
    }

    /// @dev Reverts with `reason` when strict, else returns its selector for the SettlementSkipped event.
    function _fail(bool strict, bytes memory reason) private pure returns (bytes4 selector) {
        if (strict) {
            assembly ("memory-safe") {
                revert(add(reason, 32), mload(reason))
            }
        }
        return bytes4(reason);
    }

    function _requirePayer(Channel storage ch, bytes32 channelId, address who) private view {
        address payer = ch.payer;
        if (payer == address(0)) revert ChannelNotFound(channelId);
        if (payer != who) revert ChannelNotPayer(channelId, who);
    }

    function _requireSettleable(uint32 closesAt, bytes32 channelId) private view {
        if (closesAt != 0 && block.timestamp >= closesAt) revert ChannelNotSettleable(channelId, closesAt);
    }

    function _status(Channel storage ch) private view returns (ChannelStatus) {
        if (ch.payer == address(0)) return ChannelStatus.None;
        uint32 closesAt = ch.closesAt;
        if (closesAt == 0) return ChannelStatus.Open;
        if (closesAt == CLOSED) return ChannelStatus.Closed;
        return ChannelStatus.Closing;
    }

    function _tokenIdOf(address token) private view returns (uint16 tokenId) {
        if (token == address(0)) return 0;
        tokenId = _tokenIds[token];
        if (tokenId == 0) revert TokenNotAllowed(token);
    }

    /// @dev The relay's compact id, registering it on first use; 0 once all 65,535 ids are taken (the channel then
    /// stores its relay address itself, see _channelRelays): never a revert, so ids cannot be exhausted into a DoS.
    function _relayIdOf(address relay) private returns (uint16 relayId) {
        relayId = _relayIds[relay];
        if (relayId == 0) {
            uint16 count = relayCount;
            if (count == type(uint16).max) return 0;
            // Cannot overflow: count < type(uint16).max.
            unchecked {
                relayId = count + 1;
            }
            relayCount = relayId;
            _relayIds[relay] = relayId;
            _relays[relayId] = relay;
            emit RelayRegistered(relay, relayId);
        }
    }

    /// @dev The channel's relay: by compact id, or stored with the channel when it has none (id 0).
    function _relayOf(uint16 relayId, bytes32 channelId) private view returns (address) {
        return relayId != 0 ? _relays[relayId] : _channelRelays[channelId];
    }

    /// @dev Whether `who` is the channel's relay. The compact id is tried first and decides alone when it matches
    /// (the steady state: the relay settling its channels), so channels with an id pay nothing for the fallback.
    /// `_relays[0]` is never set, so a channel without an id always reaches its stored relay.
    function _isRelay(address who, uint16 relayId, bytes32 channelId) private view returns (bool) {
        return who == _relays[relayId] || (relayId == 0 && who == _channelRelays[channelId] && who != address(0));
    }

    /// @dev Takes `amount` from the caller: checks msg.value for ETH, transferFrom for tokens.
    function _pull(uint16 tokenId, uint256 amount) private {
        if (tokenId == 0) {
            if (msg.value != amount) revert ChannelValueMismatch(amount, msg.value);
        } else {
            if (msg.value != 0) revert ChannelValueMismatch(0, msg.value);
            IERC20(_tokens[tokenId]).safeTransferFrom(msg.sender, address(this), amount);
        }
    }

    /// @dev Pays out; ETH through a call that forwards all gas (callers are nonReentrant and update state first).
    function _push(uint16 tokenId, address to, uint256 amount) private {
        if (tokenId == 0) {
            (bool ok,) = to.call{value: amount}("");
            if (!ok) revert PayoutFailed(to, amount);
        } else {
            IERC20(_tokens[tokenId]).safeTransfer(to, amount);
        }
    }
}
