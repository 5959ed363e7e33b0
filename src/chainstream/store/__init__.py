"""Durable relay state: accepted payments (the voucher log), channels, settlements, the outbox, cursors."""

from chainstream.store.sqlite import ChannelRecord, OutboxRecord, PaymentRecord, SettledRecord, SqliteStore

__all__ = ["ChannelRecord", "OutboxRecord", "PaymentRecord", "SettledRecord", "SqliteStore"]
