//! PostgreSQL: pool, migrations, the embedded private cluster, and the queries the stages share.
pub mod instances;
