// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title PackedBalance
/// @notice The layout of a payee's balance slot for one token: the balance, the time of the last scheduled payout
/// and the payout schedule share one 256-bit word, so that a scheduled payout reads and writes one storage slot per
/// payee (the schedule in a slot of its own cost every payout one more cold SLOAD, 2,100 gas).
/// @dev Bits, low to high:
///   0..127    claimable + 1 (0 only if the payee was never credited and never set a schedule);
///   128..159  time of the last scheduled payout (uint32 seconds);
///   160       schedule enabled;             161  a recipient other than the payee is stored apart;
///   162..193  period (uint32 seconds);
///   194..224  threshold, a decimal float (below), rounded UP from the signed value: a payout never comes
///             earlier than the payee signed;
///   225..255  maxFee, a decimal float, rounded DOWN from the signed value: a fee never exceeds what was signed.
/// A decimal float is `m | e << 26` for the value m * 10^e (m < 2^26, e < 32): exact for every value with at most
/// 7 significant digits (10 USDC, 0.5 ETH, 1e18), and otherwise off by less than 1.5e-7 of the value, in the
/// payee's favour (see above). Credits add to the low 128 bits only; callers keep them below 2^128 (tokens whose
/// supply can reach 2^128 are not to be allowed), so they never spill into the fields above.
/// ChainStreamChannels.payoutBatch reads and writes these fields in assembly (its gas target): a change here must be
/// made there too; the payout tests and the invariant machine compare both with the signed schedules.
library PackedBalance {
    /// @dev The low 128 bits: claimable + 1.
    uint256 internal constant BALANCE_MASK = type(uint128).max;
    /// @dev Balance and last payout time: everything a schedule change keeps.
    uint256 internal constant KEEP_MASK = type(uint160).max;
    uint256 internal constant PAID_AT_SHIFT = 128;
    uint256 internal constant ENABLED_BIT = 1 << 160;
    uint256 internal constant RECIPIENT_BIT = 1 << 161;
    uint256 internal constant PERIOD_SHIFT = 162;
    uint256 internal constant THRESHOLD_SHIFT = 194;
    uint256 internal constant MAX_FEE_SHIFT = 225;
    uint256 private constant FLOAT_MASK = (1 << 31) - 1;
    uint256 private constant MANTISSA_BITS = 26;
    uint256 private constant MANTISSA_LIMIT = 1 << 26;

    /// @notice The schedule fields of a balance word (bits 160..255) for an enabled schedule, with the threshold
    /// rounded up and the max fee rounded down.
    function packSchedule(bool hasRecipient, uint32 period, uint256 threshold, uint256 maxFee)
        internal
        pure
        returns (uint256 fields)
    {
        fields = ENABLED_BIT | (uint256(period) << PERIOD_SHIFT) | (_encode(threshold, true) << THRESHOLD_SHIFT)
            | (_encode(maxFee, false) << MAX_FEE_SHIFT);
        if (hasRecipient) fields |= RECIPIENT_BIT;
    }

    /// @notice claimable (balance - 1, or 0 for a never-written slot).
    function claimable(uint256 word) internal pure returns (uint256) {
        uint256 balance = word & BALANCE_MASK;
        // Cannot underflow: checked non-zero.
        unchecked {
            return balance == 0 ? 0 : balance - 1;
        }
    }

    /// @notice Time of the last scheduled payout (0: none).
    function paidAt(uint256 word) internal pure returns (uint256) {
        return uint32(word >> PAID_AT_SHIFT);
    }

    /// @notice Whether an enabled schedule is stored.
    function enabled(uint256 word) internal pure returns (bool) {
        return word & ENABLED_BIT != 0;
    }

    /// @notice Whether the schedule names a recipient other than the payee.
    function hasRecipient(uint256 word) internal pure returns (bool) {
        return word & RECIPIENT_BIT != 0;
    }

    /// @notice The schedule's period in seconds.
    function period(uint256 word) internal pure returns (uint256) {
        return uint32(word >> PERIOD_SHIFT);
    }

    /// @notice The effective threshold (the signed one, rounded up to a decimal float).
    function threshold(uint256 word) internal pure returns (uint256) {
        return _decode((word >> THRESHOLD_SHIFT) & FLOAT_MASK);
    }

    /// @notice The effective max fee (the signed one, rounded down to a decimal float).
    function maxFee(uint256 word) internal pure returns (uint256) {
        return _decode(word >> MAX_FEE_SHIFT);
    }

    /// @dev m * 10^e. Cannot overflow: m < 2^26 and e < 32, so the value is below 2^26 * 10^31 < 2^130.
    function _decode(uint256 packed) private pure returns (uint256) {
        unchecked {
            return (packed & (MANTISSA_LIMIT - 1)) * 10 ** (packed >> MANTISSA_BITS);
        }
    }

    /// @dev The decimal float nearest `value` from above (`up`) or below. Inputs are below 2^96 (a uint96 threshold,
    /// a uint64 fee), so e stays below 23.
    function _encode(uint256 value, bool up) private pure returns (uint256) {
        uint256 exponent = 0;
        bool inexact = false;
        while (value >= MANTISSA_LIMIT) {
            if (value % 10 != 0) inexact = true;
            value /= 10;
            ++exponent;
        }
        if (up && inexact) {
            ++value; // now ceil(original / 10^exponent)
            if (value == MANTISSA_LIMIT) {
                // 2^26 itself does not fit: ceil(2^26 / 10) * 10^(exponent + 1), still at or above the original.
                value = MANTISSA_LIMIT / 10 + 1;
                ++exponent;
            }
        }
        return value | (exponent << MANTISSA_BITS);
    }
}
