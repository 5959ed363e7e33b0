// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IChainStreamChannels} from "./IChainStreamChannels.sol";

/// @title IChainStreamGasless
/// @notice Gas-free entry points: a listener holding only an ERC-20 opens, tops up and cooperatively closes a
/// channel, and a payee sets its payout schedule, by EIP-712 signatures alone; anyone (normally the relay)
/// submits them and pays the gas. The submitter is reimbursed in the channel's token, out of the amount the
/// signer authorised, by a fee it chooses up to the signed `maxFee` (emitted with every use).
/// @dev The signer's authorisation binds everything that matters (for an open: token, relay, session key and its
/// expiry, salt, amount, max fee, submitter, nonce, deadline), so a submitter can change nothing but its own fee
/// within the signed maximum. Payment authorisations use unordered nonces (each usable once, in any order, like
/// EIP-3009); schedule authorisations use a sequential per-payee nonce, so that an older signed schedule can
/// never be submitted after a newer one (or after an opt-out by transaction). Deposits are pulled with
/// transferFrom after an optional EIP-2612 permit, which is wrapped: a permit already used (front-run by anyone
/// who saw it) does not block the call if the allowance suffices. The EIP-712 domain is
/// {name: "ChainStreamGasless", version: "1", chainId, verifyingContract: this}.
interface IChainStreamGasless {
    /// @notice An open authorised by `payer`: the channel's terms, what it may cost and who may submit it.
    /// @param submitter The only address allowed to submit it (address(0): anyone).
    /// @param amount Taken from the payer; the channel's deposit is `amount - fee`.
    /// @param maxFee The most the submitter may keep out of `amount`.
    struct OpenAuth {
        address payer;
        address token;
        address relay;
        address sessionKey;
        uint32 sessionExpiry;
        bytes32 salt;
        uint96 amount;
        uint96 maxFee;
        address submitter;
        uint256 nonce;
        uint256 deadline;
    }

    /// @notice A top-up of `channelId` authorised by `payer`: `amount` taken, `amount - fee` added to the deposit.
    struct TopUpAuth {
        address payer;
        bytes32 channelId;
        uint96 amount;
        uint96 maxFee;
        address submitter;
        uint256 nonce;
        uint256 deadline;
    }

    /// @notice A cooperative close of `channelId` at the final voucher with digest `voucherDigest` (zero: no final
    /// voucher) authorised by its payer; the fee comes out of the refund.
    struct CloseAuth {
        address payer;
        bytes32 channelId;
        bytes32 voucherDigest;
        uint96 maxFee;
        address submitter;
        uint256 nonce;
        uint256 deadline;
    }

    /// @notice A payout schedule signed by `payee` (see IChainStreamChannels.PayoutSchedule); `nonce` must be the
    /// payee's current scheduleNonce.
    struct ScheduleAuth {
        address payee;
        address token;
        bool enabled;
        address recipient;
        uint96 threshold;
        uint32 period;
        uint64 maxFee;
        uint256 nonce;
        uint256 deadline;
    }

    /// @notice An EIP-2612 permit for this contract as spender; `deadline == 0` means none (an allowance is
    /// already in place).
    struct Permit {
        uint256 value;
        uint256 deadline;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    /// @notice The authorisation's deadline has passed.
    error GaslessExpired(uint256 deadline);
    /// @notice This payment nonce of this signer was already used or cancelled.
    error GaslessNonceUsed(address signer, uint256 nonce);
    /// @notice A schedule authorisation must carry the payee's current schedule nonce.
    error GaslessScheduleNonce(address payee, uint256 nonce, uint256 expected);
    /// @notice The signature is malformed or high-s, or was not made by the stated signer over these terms.
    error GaslessInvalidSignature(address signer, address recovered);
    /// @notice The signer field is the zero address.
    error GaslessSignerZero();
    /// @notice The fee asked exceeds the signed maximum.
    error GaslessFeeAboveMax(uint256 fee, uint256 maxFee);
    /// @notice The fee would take the whole amount (or, on close, more than the refund).
    error GaslessFeeTooHigh(uint256 fee, uint256 available);
    /// @notice The authorisation names another submitter.
    error GaslessWrongSubmitter(address submitter, address caller);
    /// @notice Gas-free paths take ERC-20 channels only (an ETH payer has gas).
    error GaslessTokenRequired();
    /// @notice After the (optional) permit, the signer's allowance for this contract is below the amount.
    error GaslessAllowanceTooLow(address token, address payer, uint256 allowance, uint256 amount);
    /// @notice The final voucher submitted is not the one the payer authorised closing at.
    error GaslessVoucherMismatch(bytes32 channelId, bytes32 signed, bytes32 submitted);

    /// @notice An authorisation was used: `fee` went to `submitter`. `subject` is the channel id (open, top-up,
    /// close) or the token as bytes32 (schedule); `typeHash` says which kind.
    event AuthorizationUsed(
        address indexed signer,
        uint256 indexed nonce,
        bytes32 indexed subject,
        bytes32 typeHash,
        address submitter,
        uint256 fee
    );

    /// @notice The signer cancelled an unused payment nonce.
    event AuthorizationCancelled(address indexed signer, uint256 indexed nonce);

    /// @notice The channels contract this one acts on.
    function channels() external view returns (IChainStreamChannels);

    /// @notice Whether `signer` used (or cancelled) payment nonce `nonce`.
    function nonceUsed(address signer, uint256 nonce) external view returns (bool);

    /// @notice The nonce `payee`'s next schedule authorisation must carry.
    function scheduleNonce(address payee) external view returns (uint256);

    /// @notice The EIP-712 digest of an authorisation, as the signer signs it.
    function openDigest(OpenAuth calldata auth) external view returns (bytes32);
    /// @notice The EIP-712 digest of a top-up authorisation.
    function topUpDigest(TopUpAuth calldata auth) external view returns (bytes32);
    /// @notice The EIP-712 digest of a close authorisation.
    function closeDigest(CloseAuth calldata auth) external view returns (bytes32);
    /// @notice The EIP-712 digest of a schedule authorisation.
    function scheduleDigest(ScheduleAuth calldata auth) external view returns (bytes32);

    /// @notice Open the channel `auth` describes for its payer (signature r, vs: EIP-2098 compact), keeping `fee`
    /// (≤ auth.maxFee) for the caller.
    /// @return channelId The new channel.
    function openFor(OpenAuth calldata auth, bytes32 r, bytes32 vs, uint96 fee, Permit calldata permit)
        external
        returns (bytes32 channelId);

    /// @notice Top up the channel `auth` names from its signer's tokens, keeping `fee` (≤ auth.maxFee).
    function topUpFor(TopUpAuth calldata auth, bytes32 r, bytes32 vs, uint96 fee, Permit calldata permit) external;

    /// @notice Cooperatively close the channel `auth` names with the relay's Close signature (relayR, relayVs) over
    /// `finalVoucher`; the refund goes to the payer less `fee` (≤ auth.maxFee), which goes to the caller.
    function cooperativeCloseFor(
        CloseAuth calldata auth,
        bytes32 r,
        bytes32 vs,
        uint96 fee,
        IChainStreamChannels.SettleEntry calldata finalVoucher,
        bytes32 relayR,
        bytes32 relayVs
    ) external;

    /// @notice Set (or cancel) the payout schedule `auth` describes, signed by its payee.
    function setPayoutScheduleFor(ScheduleAuth calldata auth, bytes32 r, bytes32 vs) external;

    /// @notice The caller sets (or cancels: enabled false) its own payout schedule by transaction; this also
    /// voids any schedule authorisation it signed and did not submit.
    function setPayoutSchedule(address token, IChainStreamChannels.PayoutSchedule calldata schedule) external;

    /// @notice The caller cancels one of its unused payment nonces.
    function cancelAuthorization(uint256 nonce) external;
}
