// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title WalletPayer
/// @notice TEST ONLY. A minimal contract wallet: its owner runs a sequence of calls atomically, in one
/// transaction (so in one block, at one timestamp). The attacker suite and the invariant machine use it as a
/// channel payer that opens channels and changes session keys several times within a single transaction.
contract WalletPayer {
    /// @notice One call of a sequence.
    struct Call {
        address target;
        uint256 value;
        bytes data;
    }

    /// @notice The caller is not the wallet's owner.
    error WalletNotOwner(address caller);

    /// @notice Who may run calls.
    address public immutable owner;

    constructor() {
        owner = msg.sender;
    }

    /// @notice Accepts refunds and payouts.
    receive() external payable {}

    /// @notice Run `calls` in order; the first failure reverts the whole sequence with that call's revert data.
    /// @return results Each call's return data.
    function execute(Call[] calldata calls) external payable returns (bytes[] memory results) {
        if (msg.sender != owner) revert WalletNotOwner(msg.sender);
        results = new bytes[](calls.length);
        for (uint256 i; i < calls.length; ++i) {
            (bool ok, bytes memory ret) = calls[i].target.call{value: calls[i].value}(calls[i].data);
            if (!ok) {
                assembly ("memory-safe") {
                    revert(add(ret, 32), mload(ret))
                }
            }
            results[i] = ret;
        }
    }
}
