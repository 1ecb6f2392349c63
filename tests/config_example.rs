//! The documented example configuration is a valid configuration: every key it shows exists.

use std::path::Path;

#[test]
fn example_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/brainaged.example.toml");
    let cfg = brainaged::config::Config::load(Some(&path)).expect("example config loads");
    assert_eq!(cfg.dicom.ae_title, "BRAINAGED");
    assert_eq!(cfg.dicom.callers.len(), 2);
    assert_eq!(cfg.tracker.stable_after_secs, 30);
}
