// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IChainStreamChannels} from "./interfaces/IChainStreamChannels.sol";
import {IChainStreamGasless} from "./interfaces/IChainStreamGasless.sol";

/// @title ChainStreamGasless
/// @notice Gas-free onboarding and payout schedules for ChainStreamChannels (see IChainStreamGasless). Created by
/// the channels contract's constructor, which trusts only this contract to act for a payer or payee.
/// @dev Holds no funds between calls: each call pulls exactly what the signer authorised, pays the submitter's fee
/// and passes the rest on within the same transaction. Every check and the nonce's consumption come before any
/// external call (checks-effects-interactions), and every entry point is nonReentrant.
contract ChainStreamGasless is IChainStreamGasless, EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    bytes32 public constant OPEN_TYPEHASH = keccak256(
        "OpenChannel(address payer,address token,address relay,address sessionKey,uint32 sessionExpiry,bytes32 salt,"
        "uint96 amount,uint96 maxFee,address submitter,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant TOPUP_TYPEHASH = keccak256(
        "TopUpChannel(address payer,bytes32 channelId,uint96 amount,uint96 maxFee,address submitter,uint256 nonce,"
        "uint256 deadline)"
    );
    bytes32 public constant CLOSE_TYPEHASH = keccak256(
        "CloseChannel(address payer,bytes32 channelId,bytes32 voucherDigest,uint96 maxFee,address submitter,"
        "uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant SCHEDULE_TYPEHASH = keccak256(
        "PayoutSchedule(address payee,address token,bool enabled,address recipient,uint96 threshold,uint32 period,"
        "uint64 maxFee,uint256 nonce,uint256 deadline)"
    );

    /// @inheritdoc IChainStreamGasless
    IChainStreamChannels public immutable channels;

    /// @inheritdoc IChainStreamGasless
    mapping(address signer => mapping(uint256 nonce => bool)) public nonceUsed;

    /// @inheritdoc IChainStreamGasless
    mapping(address payee => uint256) public scheduleNonce;

    /// @param channels_ The channels contract (the deployer).
    constructor(IChainStreamChannels channels_) EIP712("ChainStreamGasless", "1") {
        channels = channels_;
    }

    // ----------------------------------------------------------------- digests

    /// @inheritdoc IChainStreamGasless
    function openDigest(OpenAuth calldata auth) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(OPEN_TYPEHASH, auth)));
    }

    /// @inheritdoc IChainStreamGasless
    function topUpDigest(TopUpAuth calldata auth) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(TOPUP_TYPEHASH, auth)));
    }

    /// @inheritdoc IChainStreamGasless
    function closeDigest(CloseAuth calldata auth) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(CLOSE_TYPEHASH, auth)));
    }

    /// @inheritdoc IChainStreamGasless
    function scheduleDigest(ScheduleAuth calldata auth) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(SCHEDULE_TYPEHASH, auth)));
    }

    // ------------------------------------------------------------- payments

    /// @inheritdoc IChainStreamGasless
    function openFor(OpenAuth calldata auth, bytes32 r, bytes32 vs, uint96 fee, Permit calldata permit)
        external
        nonReentrant
        returns (bytes32 channelId)
    {
        if (auth.token == address(0)) revert GaslessTokenRequired();
        _checkFee(fee, auth.maxFee, auth.amount, auth.submitter);
        _consumeNonce(auth.payer, auth.nonce, auth.deadline, openDigest(auth), r, vs);
        channelId = channels.channelIdFor(auth.payer, auth.token, auth.relay, auth.salt);
        emit AuthorizationUsed(auth.payer, auth.nonce, channelId, OPEN_TYPEHASH, msg.sender, fee);
        uint96 deposit = auth.amount - fee; // cannot underflow: _checkFee
        // One token pull: the whole signed amount goes from the payer straight to the channels contract, which keeps
        // the deposit and pays the fee on to the submitter (no allowance, no second transferFrom, nothing held here).
        _pullFrom(auth.token, auth.payer, address(channels), auth.amount, permit);
        channels.openFor(
            auth.payer, auth.relay, auth.token, deposit, auth.salt, auth.sessionKey, auth.sessionExpiry, fee, msg.sender
        );
    }

    /// @inheritdoc IChainStreamGasless
    function topUpFor(TopUpAuth calldata auth, bytes32 r, bytes32 vs, uint96 fee, Permit calldata permit)
        external
        nonReentrant
    {
        address tokenAddress = channels.getChannel(auth.channelId).token;
        if (tokenAddress == address(0)) revert GaslessTokenRequired();
        _checkFee(fee, auth.maxFee, auth.amount, auth.submitter);
        _consumeNonce(auth.payer, auth.nonce, auth.deadline, topUpDigest(auth), r, vs);
        emit AuthorizationUsed(auth.payer, auth.nonce, auth.channelId, TOPUP_TYPEHASH, msg.sender, fee);
        uint96 added = auth.amount - fee; // cannot underflow: _checkFee
        IERC20 token = _pullFrom(tokenAddress, auth.payer, address(this), auth.amount, permit);
        token.forceApprove(address(channels), added);
        channels.topUp(auth.channelId, added);
        if (fee != 0) token.safeTransfer(msg.sender, fee);
    }

    /// @inheritdoc IChainStreamGasless
    function cooperativeCloseFor(
        CloseAuth calldata auth,
        bytes32 r,
        bytes32 vs,
        uint96 fee,
        IChainStreamChannels.SettleEntry calldata finalVoucher,
        bytes32 relayR,
        bytes32 relayVs
    ) external nonReentrant {
        bytes32 channelId = auth.channelId;
        bytes32 submitted = finalVoucher.payees.length == 0
            ? bytes32(0)
            : channels.voucherDigest(channelId, finalVoucher.payees, finalVoucher.amounts, finalVoucher.playHash);
        if (finalVoucher.channelId != channelId || submitted != auth.voucherDigest) {
            revert GaslessVoucherMismatch(channelId, auth.voucherDigest, submitted);
        }
        address tokenAddress = channels.getChannel(channelId).token;
        if (tokenAddress == address(0)) revert GaslessTokenRequired();
        if (fee > auth.maxFee) revert GaslessFeeAboveMax(fee, auth.maxFee);
        _checkSubmitter(auth.submitter);
        _consumeNonce(auth.payer, auth.nonce, auth.deadline, closeDigest(auth), r, vs);
        emit AuthorizationUsed(auth.payer, auth.nonce, channelId, CLOSE_TYPEHASH, msg.sender, fee);
        uint256 refund = channels.cooperativeCloseFor(auth.payer, finalVoucher, relayR, relayVs);
        if (fee > refund) revert GaslessFeeTooHigh(fee, refund);
        IERC20 token = IERC20(tokenAddress);
        if (fee != 0) token.safeTransfer(msg.sender, fee);
        // Cannot underflow: fee <= refund.
        unchecked {
            if (refund - fee != 0) token.safeTransfer(auth.payer, refund - fee);
        }
    }

    /// @inheritdoc IChainStreamGasless
    function cancelAuthorization(uint256 nonce) external {
        if (nonceUsed[msg.sender][nonce]) revert GaslessNonceUsed(msg.sender, nonce);
        nonceUsed[msg.sender][nonce] = true;
        emit AuthorizationCancelled(msg.sender, nonce);
    }

    // -------------------------------------------------------------- payouts

    /// @inheritdoc IChainStreamGasless
    function setPayoutScheduleFor(ScheduleAuth calldata auth, bytes32 r, bytes32 vs) external nonReentrant {
        address payee = auth.payee;
        if (payee == address(0)) revert GaslessSignerZero();
        if (block.timestamp > auth.deadline) revert GaslessExpired(auth.deadline);
        uint256 expected = scheduleNonce[payee];
        if (auth.nonce != expected) revert GaslessScheduleNonce(payee, auth.nonce, expected);
        _requireSignature(payee, scheduleDigest(auth), r, vs);
        scheduleNonce[payee] = expected + 1;
        emit AuthorizationUsed(payee, auth.nonce, bytes32(uint256(uint160(auth.token))), SCHEDULE_TYPEHASH, msg.sender, 0);
        channels.setPayoutScheduleFor(
            payee,
            auth.token,
            IChainStreamChannels.PayoutSchedule({
                enabled: auth.enabled,
                recipient: auth.recipient,
                threshold: auth.threshold,
                period: auth.period,
                maxFee: auth.maxFee
            })
        );
    }

    /// @inheritdoc IChainStreamGasless
    function setPayoutSchedule(address token, IChainStreamChannels.PayoutSchedule calldata schedule)
        external
        nonReentrant
    {
        ++scheduleNonce[msg.sender]; // voids a signed schedule not yet submitted
        channels.setPayoutScheduleFor(msg.sender, token, schedule);
    }

    // -------------------------------------------------------------- internal

    function _checkFee(uint96 fee, uint96 maxFee, uint96 amount, address submitter) private view {
        if (fee > maxFee) revert GaslessFeeAboveMax(fee, maxFee);
        if (fee >= amount) revert GaslessFeeTooHigh(fee, amount);
        _checkSubmitter(submitter);
    }

    function _checkSubmitter(address submitter) private view {
        if (submitter != address(0) && submitter != msg.sender) revert GaslessWrongSubmitter(submitter, msg.sender);
    }

    /// @dev Deadline, unused nonce and signature, then marks the nonce used (before any external call).
    function _consumeNonce(address signer, uint256 nonce, uint256 deadline, bytes32 digest, bytes32 r, bytes32 vs)
        private
    {
        if (signer == address(0)) revert GaslessSignerZero();
        if (block.timestamp > deadline) revert GaslessExpired(deadline);
        if (nonceUsed[signer][nonce]) revert GaslessNonceUsed(signer, nonce);
        _requireSignature(signer, digest, r, vs);
        nonceUsed[signer][nonce] = true;
    }

    /// @dev ECDSA.tryRecover rejects high-s and malformed signatures; a zero signer was refused before.
    function _requireSignature(address signer, bytes32 digest, bytes32 r, bytes32 vs) private pure {
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, r, vs);
        if (err != ECDSA.RecoverError.NoError || recovered != signer) revert GaslessInvalidSignature(signer, recovered);
    }

    /// @dev Moves `amount` of `tokenAddress` from `owner` to `to` after trying its permit. The permit may already
    /// have been used by someone who saw it (OpenZeppelin's front-running note on ERC-2612): its failure is ignored
    /// and the allowance decides, with a clear error if it is short.
    function _pullFrom(address tokenAddress, address owner, address to, uint256 amount, Permit calldata permit)
        private
        returns (IERC20 token)
    {
        token = IERC20(tokenAddress);
        if (permit.deadline != 0) {
            try IERC20Permit(tokenAddress).permit(
                owner, address(this), permit.value, permit.deadline, permit.v, permit.r, permit.s
            ) {} catch {}
        }
        uint256 allowance = token.allowance(owner, address(this));
        if (allowance < amount) revert GaslessAllowanceTooLow(tokenAddress, owner, allowance, amount);
        token.safeTransferFrom(owner, to, amount);
    }
}
