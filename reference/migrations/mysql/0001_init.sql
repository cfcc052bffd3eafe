-- Times are milliseconds since the Unix epoch (BIGINT in both dialects).
CREATE TABLE users (
    id BIGINT PRIMARY KEY AUTO_INCREMENT,
    name VARCHAR(400) NOT NULL,
    email VARCHAR(254) NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE tasks (
    id VARCHAR(36) PRIMARY KEY,
    kind VARCHAR(16) NOT NULL,
    payload LONGTEXT NOT NULL,
    callback_url TEXT,
    status VARCHAR(16) NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    result LONGTEXT,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Rows waiting to be published; a relay leases a range, publishes with confirms, deletes.
CREATE TABLE outbox (
    id BIGINT PRIMARY KEY AUTO_INCREMENT,
    task_id VARCHAR(36) NOT NULL,
    routing_key VARCHAR(255) NOT NULL,
    body LONGTEXT NOT NULL,
    created_at BIGINT NOT NULL,
    lease_owner VARCHAR(64),
    lease_until BIGINT NOT NULL DEFAULT 0,
    INDEX outbox_lease (lease_until, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE idempotency_keys (
    idem_key VARCHAR(255) PRIMARY KEY,
    fingerprint VARCHAR(64) NOT NULL,
    state VARCHAR(16) NOT NULL,
    response_status BIGINT,
    response_body LONGTEXT,
    location TEXT,
    locked_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    INDEX idempotency_keys_created (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- A message id here means its effect is committed; written in the effect's transaction.
CREATE TABLE processed_messages (
    message_id VARCHAR(64) PRIMARY KEY,
    processed_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE accounts (
    id VARCHAR(64) PRIMARY KEY,
    balance BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Callbacks and events owed for finished tasks, written with the terminal status.
CREATE TABLE deliveries (
    id BIGINT PRIMARY KEY AUTO_INCREMENT,
    task_id VARCHAR(36) NOT NULL,
    event_id VARCHAR(36) NOT NULL,
    kind VARCHAR(16) NOT NULL,
    target TEXT NOT NULL,
    body LONGTEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_owner VARCHAR(64),
    lease_until BIGINT NOT NULL DEFAULT 0,
    state VARCHAR(16) NOT NULL DEFAULT 'pending',
    last_error TEXT,
    UNIQUE KEY deliveries_event (event_id, kind),
    INDEX deliveries_due (state, next_attempt_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
