"""Audio as the product: the content store, transcoding with ffmpeg, upload authorisation and streaming grants.

Pure or file-system-only pieces; the relay's HTTP edge is relay/api/media.py and its logic relay/media.py.
"""

from chainstream.media.errors import MediaError
from chainstream.media.grants import GRANT_KINDS, Grant
from chainstream.media.store import ContentStore, DirectoryContentStore, Manifest, Segment
from chainstream.media.upload import upload_digest, upload_message

__all__ = [
    "GRANT_KINDS",
    "ContentStore",
    "DirectoryContentStore",
    "Grant",
    "Manifest",
    "MediaError",
    "Segment",
    "upload_digest",
    "upload_message",
]
