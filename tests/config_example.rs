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

/// The commented `[dicom.tls]` block and the commented caller with a `tls_name`, uncommented,
/// are a valid configuration with the values they document: every key they show exists and
/// means what its comment says.
#[test]
fn documented_tls_blocks_load_when_uncommented() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/brainaged.example.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    let uncommented = |header: &str| -> String {
        let block: Vec<&str> = text
            .lines()
            .skip_while(|l| l.strip_prefix("# ") != Some(header))
            .take_while(|l| l.starts_with('#'))
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.starts_with('[') || l.contains(" = "))
            .collect();
        assert_eq!(block.first(), Some(&header), "{header} block not found");
        block.join("\n")
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tls.toml");
    let blocks = [uncommented("[dicom.tls]"), uncommented("[[dicom.callers]]")];
    std::fs::write(&path, blocks.join("\n")).unwrap();
    let cfg = brainaged::config::Config::load(Some(&path)).expect("uncommented blocks load");
    let tls = cfg.dicom.tls.expect("[dicom.tls] parsed");
    assert_eq!(tls.bind.port(), 2762);
    assert!(tls.certificate.ends_with("brainaged.pem"));
    assert!(tls.private_key.ends_with("brainaged.key"));
    assert!(tls.client_ca.is_some());
    assert!(tls.client_crl.is_some());
    assert!(tls.plain_listener);
    assert_eq!(cfg.dicom.callers.len(), 1);
    assert_eq!(
        cfg.dicom.callers[0].tls_name.as_deref(),
        Some("ct1.radiology.hospital.local")
    );
}
