// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ITrackRegistry
/// @notice Artists publish tracks: who owns them, what a play / a second / a download costs in each token, and
/// how every payment is split among rights holders, with an optional platform fee off the top.
/// @dev Settlement never reads this registry: vouchers name payees and amounts directly. The registry is the
/// public rulebook the relay and listener clients price by, and what artists audit their earnings against.
/// A split is immutable once published: a change creates a new version with a new hash, and every play
/// receipt commits to the split hash it was priced with, so a change can never redirect signed plays.
interface ITrackRegistry {
    /// @notice Price terms of a track in one token. All amounts are in the token's smallest unit.
    /// @param perPlay Price of one play (model 0), or of the first play (model 1, stream-to-own).
    /// @param perSecond Price of one second of listening (0 = per-second metering not offered).
    /// @param download One-time purchase price (0 = not for sale).
    /// @param model 0 = flat per play; 1 = stream-to-own: play n costs perPlay * 2^(n-1) for n <= ownAfter,
    /// after which the listener owns the track and plays are free.
    /// @param ownAfter Stream-to-own: number of paid plays (1..32).
    /// @param minSeconds A play is charged once this many seconds were heard (0 = at start).
    /// @param enabled False once terms were withdrawn for this token.
    struct Terms {
        uint96 perPlay;
        uint96 perSecond;
        uint96 download;
        uint8 model;
        uint8 ownAfter;
        uint16 minSeconds;
        bool enabled;
    }

    /// @notice Who gets what share of a payment. `feeBps` goes to `feeRecipient` off the top; the rest is split
    /// by `bps` (summing to 10,000) with the rounding remainder going to `recipients[0]`.
    struct Split {
        address[] recipients;
        uint16[] bps;
        address feeRecipient;
        uint16 feeBps;
    }

    /// @notice Public view of a track.
    struct TrackView {
        address owner;
        string title;
        uint32 splitVersion;
        bytes32 splitHash;
        uint64 registeredAt;
    }

    /// @notice A track with this id exists already.
    error TrackExists(bytes32 trackId);
    /// @notice No track has this id.
    error TrackNotFound(bytes32 trackId);
    /// @notice Only the track owner may do this.
    error TrackNotOwner(bytes32 trackId, address caller);
    /// @notice The new owner is the zero address.
    error TrackOwnerZero();
    /// @notice The split has no recipients, or more than MAX_RECIPIENTS.
    error SplitRecipientCount(uint256 count);
    /// @notice recipients and bps lengths differ.
    error SplitLengthMismatch(uint256 recipients, uint256 bps);
    /// @notice A recipient is the zero address or appears twice.
    error SplitBadRecipient(uint256 index, address recipient);
    /// @notice A share is zero or the shares do not sum to 10,000.
    error SplitSharesInvalid(uint256 sum);
    /// @notice The fee exceeds MAX_FEE_BPS, or a fee has no recipient.
    error SplitFeeInvalid(uint16 feeBps, address feeRecipient);
    /// @notice The price model is unknown, or its parameters are out of range.
    error TermsInvalid(uint8 model, uint8 ownAfter);

    /// @notice A track was registered.
    event TrackRegistered(bytes32 indexed trackId, address indexed owner, string title);
    /// @notice A track changed owner.
    event TrackTransferred(bytes32 indexed trackId, address indexed from, address indexed to);
    /// @notice Terms in `token` (address(0) = ETH) were set or withdrawn.
    event TermsSet(bytes32 indexed trackId, address indexed token, Terms terms);
    /// @notice A new split version was published; it applies to plays priced from now on.
    event SplitSet(bytes32 indexed trackId, uint32 version, bytes32 splitHash, Split split);

    /// @notice Register a track with its first split and its terms in one token.
    /// @param trackId Any unique id; ChainStream uses the keccak256 of the audio content.
    function registerTrack(bytes32 trackId, string calldata title, address token, Terms calldata terms, Split calldata split)
        external;

    /// @notice Set (or with enabled = false, withdraw) the track's terms in `token`. Owner only.
    function setTerms(bytes32 trackId, address token, Terms calldata terms) external;

    /// @notice Publish a new split version for future plays. Owner only.
    function setSplit(bytes32 trackId, Split calldata split) external returns (uint32 version);

    /// @notice Hand the track to a new owner. Owner only.
    function transferTrack(bytes32 trackId, address newOwner) external;

    // ----------------------------------------------------------------- views (what clients price from)

    /// @notice A track's owner, title, current split version and its hash, and registration time.
    /// @dev Reverts with TrackNotFound for an unregistered id (e.g. a direct tip's address word).
    function getTrack(bytes32 trackId) external view returns (TrackView memory view_);

    /// @notice A track's terms in `token` (address(0) = ETH); `enabled = false` if it is not offered in it.
    function getTerms(bytes32 trackId, address token) external view returns (Terms memory);

    /// @notice A split version of a track (versions start at 1) and its hash; every version stays readable, so a
    /// receipt's splitHash can be matched against the version it was priced with.
    function getSplit(bytes32 trackId, uint32 version) external view returns (Split memory split, bytes32 splitHash);

    /// @notice Number of registered tracks.
    function trackCount() external view returns (uint256);

    /// @notice Track ids in registration order, `count` of them from `start` (fewer at the end).
    function trackIds(uint256 start, uint256 count) external view returns (bytes32[] memory ids);

    /// @notice The hash a play receipt commits to: keccak256(abi.encode(recipients, bps, feeRecipient, feeBps)).
    function hashSplit(Split calldata split) external pure returns (bytes32);
}
