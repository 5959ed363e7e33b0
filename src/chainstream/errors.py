"""One exception root for ChainStream, split into what a caller can recover from and what it cannot.

Every rejection carries a stable machine-readable ``code`` (used verbatim in HTTP error bodies and CLI
messages) next to its human-readable text.
"""

from __future__ import annotations

from chainstream.codes import Code


class ChainStreamError(Exception):
    """Root of every ChainStream exception. ``details`` holds the numbers a client needs to act on it, named
    (integers as decimal strings, like the rest of the API): answered as the error body's ``details``."""

    code: str = Code.CHAINSTREAM_ERROR

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, str] | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.details: dict[str, str] = details or {}

    @property
    def message(self) -> str:
        return str(self)


class RecoverableError(ChainStreamError):
    """The operation failed but the system is consistent; the caller may fix its input and retry."""


class UnrecoverableError(ChainStreamError):
    """A broken invariant or environment; retrying cannot help."""


class ConfigurationError(UnrecoverableError, RuntimeError):
    """Missing or inconsistent configuration (addresses, keys, toolchain)."""

    code = Code.CONFIGURATION


class ProtocolError(RecoverableError, ValueError):
    """A message that does not follow the voucher protocol (bad field, bad signature, wrong domain)."""

    code = Code.PROTOCOL


class PricingError(RecoverableError, ValueError):
    """Invalid terms or split, or a charge the terms do not allow."""

    code = Code.PRICING


class ChainError(RecoverableError):
    """A transaction reverted or the node refused it; ``reason`` names the contract's custom error."""

    code = Code.CHAIN

    def __init__(self, message: str, *, reason: str | None = None, args: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.error_args = args or {}
