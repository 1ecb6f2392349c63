//! The documented example configuration is a valid configuration: every key it shows exists.

use std::path::Path;

#[test]
fn example_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/brainaged.example.toml");
    let cfg = brainaged::config::Config::load(Some(&path)).expect("example config loads");
    assert_eq!(cfg.dicom.ae_title, "BRAINAGED");
    assert_eq!(cfg.dicom.callers.len(), 2);
    assert_eq!(cfg.tracker.stable_after_secs, 30);
    let pipeline = brainaged::config::PipelineConfig::default();
    assert_eq!(cfg.pipeline.max_attempts, pipeline.max_attempts);
    assert_eq!(cfg.pipeline.job_timeout_secs, pipeline.job_timeout_secs);
    // The documented classification defaults are the code's defaults.
    let defaults = brainaged::convert::classify::ClassifyRules::default();
    assert_eq!(cfg.classify.t1_patterns, defaults.t1_patterns);
    assert_eq!(cfg.classify.not_t1_patterns, defaults.not_t1_patterns);
    assert_eq!(
        cfg.classify.derived_diffusion_patterns,
        defaults.derived_diffusion_patterns
    );
    assert_eq!(cfg.classify.t1_min_slices, defaults.t1_min_slices);
}
