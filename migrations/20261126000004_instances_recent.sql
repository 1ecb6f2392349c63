-- The receiver indexes an instance while its file is still being made durable, so that the
-- database's commit and the file's fsync overlap. After a crash, the rows of the last moments may
-- therefore name files that never reached the disk; at start-up the daemon checks the rows
-- indexed shortly before the newest one (`scp::recover`). This index makes finding them cheap.
CREATE INDEX instances_indexed_at ON instances (indexed_at);

-- The index function runs once per received instance. Its statements' plans do not depend on
-- the values (every lookup is by a unique key), so PostgreSQL's habit of planning the first
-- executions afresh and re-checking custom plans is pure cost: plan them once, generically.
ALTER FUNCTION brainaged_index_instance(
    TEXT, TEXT, TEXT, TEXT, INTEGER, TEXT, TEXT, BIGINT, TEXT, TIMESTAMPTZ, TEXT, TEXT, TEXT,
    DATE, TEXT, DATE, TEXT, TEXT, TEXT, INTEGER, TEXT, TEXT, TEXT
) SET plan_cache_mode = force_generic_plan;
