-- Tables keyed by text keep their rows in the key's own B-tree (WITHOUT ROWID): one tree
-- instead of a rowid table plus a key index, so an insert writes half the pages. Their rows
-- are small (a key, a stored 202 response; a message id and a time).
CREATE TABLE idempotency_keys_clustered (
    idem_key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    response_status BIGINT,
    response_body TEXT,
    location TEXT,
    locked_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
) WITHOUT ROWID;
INSERT INTO idempotency_keys_clustered SELECT idem_key, fingerprint, state, response_status,
    response_body, location, locked_at, created_at FROM idempotency_keys;
DROP TABLE idempotency_keys;
ALTER TABLE idempotency_keys_clustered RENAME TO idempotency_keys;
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

CREATE TABLE processed_messages_clustered (
    message_id TEXT PRIMARY KEY,
    processed_at BIGINT NOT NULL
) WITHOUT ROWID;
INSERT INTO processed_messages_clustered SELECT message_id, processed_at FROM processed_messages;
DROP TABLE processed_messages;
ALTER TABLE processed_messages_clustered RENAME TO processed_messages;
CREATE INDEX processed_messages_age ON processed_messages (processed_at);
