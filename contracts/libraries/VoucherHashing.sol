// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title VoucherHashing
/// @notice EIP-712 struct hashes of ChainStream's signed messages and the settled-state commitment.
/// @dev The type strings here are the protocol: docs/PROTOCOL.md and src/chainstream/protocol must match them
/// byte for byte (a test checks the Python side against these constants through the deployed contract).
/// Voucher and Close have different type hashes, so a signature over one can never verify as the other.
library VoucherHashing {
    /// @dev keccak256("Voucher(bytes32 channelId,address[] payees,uint256[] amounts,bytes32 playHash)")
    bytes32 internal constant VOUCHER_TYPEHASH =
        keccak256("Voucher(bytes32 channelId,address[] payees,uint256[] amounts,bytes32 playHash)");

    /// @dev keccak256("Close(bytes32 channelId,bytes32 voucherDigest)")
    bytes32 internal constant CLOSE_TYPEHASH = keccak256("Close(bytes32 channelId,bytes32 voucherDigest)");

    /// @notice EIP-712 encodeData of a calldata address[] or uint256[]: keccak256 of its 32-byte words.
    /// @dev Hashes the ABI words as they are, in scratch memory past the free pointer (nothing is allocated, so a
    /// batch of many vouchers pays no growing memory cost). An address word with dirty upper bits hashes
    /// differently from the clean address a signer signed, so such input can only fail signature checks.
    function hashWords(uint256 offset, uint256 length) internal pure returns (bytes32 result) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            let size := shl(5, length)
            calldatacopy(ptr, offset, size)
            result := keccak256(ptr, size)
        }
    }

    /// @notice hashStruct(Voucher) given the already hashed arrays.
    function voucherStructHash(bytes32 channelId, bytes32 payeesHash, bytes32 amountsHash, bytes32 playHash)
        internal
        pure
        returns (bytes32 result)
    {
        bytes32 typeHash = VOUCHER_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typeHash)
            mstore(add(ptr, 0x20), channelId)
            mstore(add(ptr, 0x40), payeesHash)
            mstore(add(ptr, 0x60), amountsHash)
            mstore(add(ptr, 0x80), playHash)
            result := keccak256(ptr, 0xa0)
        }
    }

    /// @notice hashStruct(Close): the relay's consent to close a channel at the voucher with this digest.
    function closeStructHash(bytes32 channelId, bytes32 voucherDigest) internal pure returns (bytes32) {
        return keccak256(abi.encode(CLOSE_TYPEHASH, channelId, voucherDigest));
    }

    /// @notice The 160-bit commitment to a channel's settled state: which payees, credited how much.
    /// @dev 160 bits keep the commitment in one storage slot with the settled total; forging a different
    /// prevAmounts vector needs a second preimage of a 160-bit hash (~2^160 work), and the contract also
    /// checks that prevAmounts sum to the settled total.
    function settledRoot(bytes32 payeesHash, bytes32 amountsHash) internal pure returns (bytes20 result) {
        assembly ("memory-safe") {
            mstore(0x00, payeesHash)
            mstore(0x20, amountsHash)
            result := and(keccak256(0x00, 0x40), not(0xffffffffffffffffffffffff))
        }
    }
}
