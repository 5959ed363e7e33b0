// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ITrackRegistry} from "./interfaces/ITrackRegistry.sol";

/// @title TrackRegistry
/// @notice The public catalog of tracks, their prices and their versioned revenue splits.
/// @dev See ITrackRegistry. Registration is rare, so clarity wins over gas here: splits are stored whole.
contract TrackRegistry is ITrackRegistry {
    /// @notice Largest number of split recipients (bounds the per-play pricing work of clients).
    uint256 public constant MAX_RECIPIENTS = 16;
    /// @notice Largest platform fee, in basis points.
    uint16 public constant MAX_FEE_BPS = 5_000;
    uint16 private constant TOTAL_BPS = 10_000;

    struct Track {
        address owner;
        uint32 splitVersion;
        uint64 registeredAt;
        string title;
    }

    mapping(bytes32 trackId => Track) private _tracks;
    mapping(bytes32 trackId => mapping(address token => Terms)) private _terms;
    mapping(bytes32 trackId => mapping(uint32 version => Split)) private _splits;
    mapping(bytes32 trackId => mapping(uint32 version => bytes32)) private _splitHashes;
    bytes32[] private _trackIds;

    /// @inheritdoc ITrackRegistry
    function registerTrack(bytes32 trackId, string calldata title, address token, Terms calldata terms, Split calldata split)
        external
    {
        Track storage track = _tracks[trackId];
        if (track.owner != address(0)) revert TrackExists(trackId);
        track.owner = msg.sender;
        track.registeredAt = uint64(block.timestamp);
        track.title = title;
        _trackIds.push(trackId);
        emit TrackRegistered(trackId, msg.sender, title);
        _setTerms(trackId, token, terms);
        _setSplit(track, trackId, split);
    }

    /// @inheritdoc ITrackRegistry
    function setTerms(bytes32 trackId, address token, Terms calldata terms) external {
        _requireOwner(trackId);
        _setTerms(trackId, token, terms);
    }

    /// @inheritdoc ITrackRegistry
    function setSplit(bytes32 trackId, Split calldata split) external returns (uint32 version) {
        return _setSplit(_requireOwner(trackId), trackId, split);
    }

    /// @inheritdoc ITrackRegistry
    function transferTrack(bytes32 trackId, address newOwner) external {
        Track storage track = _requireOwner(trackId);
        if (newOwner == address(0)) revert TrackOwnerZero();
        track.owner = newOwner;
        emit TrackTransferred(trackId, msg.sender, newOwner);
    }

    // ----------------------------------------------------------------- views

    /// @inheritdoc ITrackRegistry
    function getTrack(bytes32 trackId) external view returns (TrackView memory view_) {
        Track storage track = _tracks[trackId];
        if (track.owner == address(0)) revert TrackNotFound(trackId);
        view_ = TrackView(track.owner, track.title, track.splitVersion, _splitHashes[trackId][track.splitVersion], track.registeredAt);
    }

    /// @inheritdoc ITrackRegistry
    function getTerms(bytes32 trackId, address token) external view returns (Terms memory) {
        return _terms[trackId][token];
    }

    /// @inheritdoc ITrackRegistry
    function getSplit(bytes32 trackId, uint32 version) external view returns (Split memory split, bytes32 splitHash) {
        return (_splits[trackId][version], _splitHashes[trackId][version]);
    }

    /// @inheritdoc ITrackRegistry
    function trackCount() external view returns (uint256) {
        return _trackIds.length;
    }

    /// @inheritdoc ITrackRegistry
    function trackIds(uint256 start, uint256 count) external view returns (bytes32[] memory ids) {
        uint256 end = start + count;
        if (end > _trackIds.length) end = _trackIds.length;
        if (start >= end) return ids;
        ids = new bytes32[](end - start);
        for (uint256 i = start; i < end; ++i) {
            ids[i - start] = _trackIds[i];
        }
    }

    /// @inheritdoc ITrackRegistry
    function hashSplit(Split calldata split) public pure returns (bytes32) {
        return keccak256(abi.encode(split.recipients, split.bps, split.feeRecipient, split.feeBps));
    }

    // -------------------------------------------------------------- internal

    function _requireOwner(bytes32 trackId) private view returns (Track storage track) {
        track = _tracks[trackId];
        if (track.owner == address(0)) revert TrackNotFound(trackId);
        if (track.owner != msg.sender) revert TrackNotOwner(trackId, msg.sender);
    }

    function _setTerms(bytes32 trackId, address token, Terms calldata terms) private {
        if (terms.model > 1 || (terms.model == 1 && (terms.ownAfter == 0 || terms.ownAfter > 32))) {
            revert TermsInvalid(terms.model, terms.ownAfter);
        }
        _terms[trackId][token] = terms;
        emit TermsSet(trackId, token, terms);
    }

    function _setSplit(Track storage track, bytes32 trackId, Split calldata split) private returns (uint32 version) {
        _validateSplit(split);
        version = ++track.splitVersion;
        _splits[trackId][version] = split;
        bytes32 splitHash = hashSplit(split);
        _splitHashes[trackId][version] = splitHash;
        emit SplitSet(trackId, version, splitHash, split);
    }

    function _validateSplit(Split calldata split) private pure {
        uint256 count = split.recipients.length;
        if (count == 0 || count > MAX_RECIPIENTS) revert SplitRecipientCount(count);
        if (split.bps.length != count) revert SplitLengthMismatch(count, split.bps.length);
        uint256 sum;
        for (uint256 i; i < count; ++i) {
            address recipient = split.recipients[i];
            if (recipient == address(0)) revert SplitBadRecipient(i, recipient);
            for (uint256 j; j < i; ++j) {
                if (split.recipients[j] == recipient) revert SplitBadRecipient(i, recipient);
            }
            if (split.bps[i] == 0) revert SplitSharesInvalid(0);
            sum += split.bps[i];
        }
        if (sum != TOTAL_BPS) revert SplitSharesInvalid(sum);
        if (split.feeBps > MAX_FEE_BPS || (split.feeBps != 0) != (split.feeRecipient != address(0))) {
            revert SplitFeeInvalid(split.feeBps, split.feeRecipient);
        }
    }
}
