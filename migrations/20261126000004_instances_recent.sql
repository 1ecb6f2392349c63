-- The receiver indexes an instance while its file is still being made durable, so that the
-- database's commit and the file's fsync overlap. After a crash, the rows of the last moments may
-- therefore name files that never reached the disk; at start-up the daemon checks the rows
-- indexed shortly before the newest one (`scp::recover`). This index makes finding them cheap.
CREATE INDEX instances_indexed_at ON instances (indexed_at);
