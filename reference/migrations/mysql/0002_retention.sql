-- Retention: housekeeping deletes processed-message records by age, in batches.
CREATE INDEX processed_messages_age ON processed_messages (processed_at);
