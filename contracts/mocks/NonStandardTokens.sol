// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice Minimal balance bookkeeping shared by the non-standard test tokens.
abstract contract TestTokenBase {
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    /// @notice Test faucet.
    function mint(address to, uint256 amount) external {
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    /// @notice Standard approve.
    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    function _move(address from, address to, uint256 amount) internal returns (bool) {
        if (balanceOf[from] < amount) return false;
        balanceOf[from] -= amount;
        balanceOf[to] += amount;
        emit Transfer(from, to, amount);
        return true;
    }

    function _spend(address owner, uint256 amount) internal returns (bool) {
        if (allowance[owner][msg.sender] < amount) return false;
        allowance[owner][msg.sender] -= amount;
        return true;
    }
}

/// @title NoReturnToken
/// @notice USDT-style: transfer and transferFrom return nothing and revert on failure.
contract NoReturnToken is TestTokenBase {
    /// @notice Transfer without a return value.
    function transfer(address to, uint256 amount) external {
        require(_move(msg.sender, to, amount), "balance");
    }

    /// @notice TransferFrom without a return value.
    function transferFrom(address from, address to, uint256 amount) external {
        require(_spend(from, amount) && _move(from, to, amount), "allowance/balance");
    }
}

/// @title FalseReturnToken
/// @notice Returns false instead of reverting when a transfer cannot be made.
contract FalseReturnToken is TestTokenBase {
    /// @notice Returns false on insufficient balance.
    function transfer(address to, uint256 amount) external returns (bool) {
        return _move(msg.sender, to, amount);
    }

    /// @notice Returns false on insufficient allowance or balance.
    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        return _spend(from, amount) && _move(from, to, amount);
    }
}

interface IClaim {
    function claim(address token, address to) external returns (uint256);
}

/// @title ReentrantToken
/// @notice On every transfer out of the target it tries to re-enter target.claim(); records whether it got in.
contract ReentrantToken is TestTokenBase {
    address public target;
    uint256 public reentrySucceeded;
    uint256 public reentryAttempts;

    /// @notice Set the contract to attack.
    function setTarget(address target_) external {
        target = target_;
    }

    /// @notice Transfer that calls back into the target when it is the sender.
    function transfer(address to, uint256 amount) external returns (bool) {
        bool ok = _move(msg.sender, to, amount);
        if (msg.sender == target) {
            reentryAttempts++;
            try IClaim(target).claim(address(this), to) returns (uint256) {
                reentrySucceeded++;
            } catch {}
        }
        return ok;
    }

    /// @notice Standard transferFrom returning a bool.
    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        return _spend(from, amount) && _move(from, to, amount);
    }
}

/// @title ReentrantPayee
/// @notice A payee contract whose receive() tries to claim again; records whether it got in.
contract ReentrantPayee {
    address public immutable target;
    uint256 public reentrySucceeded;
    uint256 public reentryAttempts;

    constructor(address target_) {
        target = target_;
    }

    /// @notice Claim ETH from the target to this contract.
    function claimEth() external returns (uint256) {
        return IClaim(target).claim(address(0), address(this));
    }

    receive() external payable {
        reentryAttempts++;
        try IClaim(target).claim(address(0), address(this)) returns (uint256) {
            reentrySucceeded++;
        } catch {}
    }
}
