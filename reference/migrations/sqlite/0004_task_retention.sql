-- Retention: housekeeping deletes finished tasks by when they were submitted, in batches.
CREATE INDEX tasks_created ON tasks (created_at);
