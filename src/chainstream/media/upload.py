"""What an artist signs to publish audio for a track: an EIP-191 message naming the track (its content hash),
the relay and the chain. Readable in a wallet's signing prompt; bound to one relay and chain, so a signature
captured by one relay cannot publish elsewhere (and it can only ever publish the very file whose hash it names).
"""

from __future__ import annotations

from chainstream.protocol.hashing import keccak
from chainstream.protocol.types import to_address


def upload_message(chain_id: int, relay: str, track_id: bytes) -> str:
    """The text the track's owner signs (personal_sign) to publish the file whose keccak256 is `track_id`."""
    return f"ChainStream: publish audio\ntrack: 0x{track_id.hex()}\nrelay: {to_address(relay)}\nchain: {chain_id}"


def upload_digest(chain_id: int, relay: str, track_id: bytes) -> bytes:
    """The EIP-191 (version 0x45, personal_sign) digest of `upload_message`."""
    message = upload_message(chain_id, relay, track_id).encode()
    return keccak(b"\x19Ethereum Signed Message:\n" + str(len(message)).encode() + message)
