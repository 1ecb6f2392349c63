//! Series completion and the job queue.
