//! Logging set-up.
//!
//! Patient names, IDs and birth dates are never logged at info level or above: spans carry UIDs
//! (which are not PHI on their own) and counts. PHI may appear only at debug or trace, which an
//! operator turns on deliberately.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `json` selects JSON lines; `filter` is a tracing directive
/// used when `RUST_LOG` is not set. ONNX Runtime is held at `warn` because it is chatty at info.
pub fn init(json: bool, filter: Option<&str>) {
    let base = filter.unwrap_or("info");
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{base},ort=warn,sqlx=warn")));
    // Colours only for a person at a terminal: journald and log files get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second init (tests, or a CLI command that calls into the daemon code) is harmless.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
