-- The relay's SQLite schema 1 (before PRAGMA user_version was kept), the oldest form (no caps_issued_at).
-- Kept to test the migration to the current schema.
CREATE TABLE IF NOT EXISTS channels (
    channel_id BLOB PRIMARY KEY,
    payer TEXT NOT NULL,
    token TEXT NOT NULL,
    deposit TEXT NOT NULL,
    session_key TEXT NOT NULL,
    session_expiry INTEGER NOT NULL,
    status TEXT NOT NULL,            -- open | closing | closed
    closes_at INTEGER NOT NULL DEFAULT 0,
    coop_close_digest BLOB,          -- set once the relay co-signed a close: no payments after it
    daily_cap TEXT,
    session_cap TEXT,
    opened_block INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS payments (
    channel_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    digest BLOB NOT NULL UNIQUE,
    total TEXT NOT NULL,
    payees TEXT NOT NULL,
    amounts TEXT NOT NULL,
    play_hash BLOB NOT NULL,
    signature BLOB NOT NULL,
    signer TEXT NOT NULL,
    kind INTEGER NOT NULL,
    target BLOB NOT NULL,
    units INTEGER NOT NULL,
    amount TEXT NOT NULL,
    split_hash BLOB NOT NULL,
    memo TEXT NOT NULL,
    accepted_at REAL NOT NULL,
    PRIMARY KEY (channel_id, seq)
);  -- a rowid table: its ~500-byte rows are appended in commit order, only the small keys land at random
CREATE TABLE IF NOT EXISTS earnings (
    payee TEXT NOT NULL,
    channel_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    target BLOB NOT NULL,
    kind INTEGER NOT NULL,
    units INTEGER NOT NULL,
    amount TEXT NOT NULL,
    accepted_at REAL NOT NULL,
    PRIMARY KEY (payee, channel_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settled (
    channel_id BLOB PRIMARY KEY,
    total TEXT NOT NULL,
    payees TEXT NOT NULL,
    credited TEXT NOT NULL,
    block INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,            -- signed | sent | confirmed | failed
    nonce INTEGER NOT NULL,
    tx_hash BLOB NOT NULL,
    raw_tx BLOB NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    block INTEGER,
    error TEXT
);
CREATE TABLE IF NOT EXISTS claims (
    tx_hash BLOB NOT NULL,
    log_index INTEGER NOT NULL,
    payee TEXT NOT NULL,
    token TEXT NOT NULL,
    amount TEXT NOT NULL,
    block INTEGER NOT NULL,
    PRIMARY KEY (tx_hash, log_index)
);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, block INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS earnings_by_payee_time ON earnings (payee, accepted_at);
CREATE INDEX IF NOT EXISTS claims_by_payee ON claims (payee);
CREATE INDEX IF NOT EXISTS outbox_by_status ON outbox (status);
