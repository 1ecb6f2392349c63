//! The durable instance store: the source of truth for every received instance.
