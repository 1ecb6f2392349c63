//! Daemon configuration: a TOML file plus `BRAINAGED__SECTION__KEY` environment overrides.
//!
//! Every key is documented in `config/brainaged.example.toml`; the key names are a contract with
//! operators and tests, so renaming one is a breaking change.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub dicom: DicomConfig,
    #[serde(default)]
    pub spool: SpoolConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub tracker: TrackerConfig,
    #[serde(default)]
    pub logging: LoggingConfig,
    #[serde(default)]
    pub inference: InferenceConfig,
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// Series classification (t1w | dwi | other); see `crate::convert::classify` for the rules.
    #[serde(default)]
    pub classify: crate::convert::classify::ClassifyRules,
}

/// The workers that consume completed-series jobs (convert, and later scoring and reports).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Jobs processed at once. Conversion is itself parallel (rayon), so 1 suits most sites.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Where converted volumes are written; default `<data dir>/derived`.
    #[serde(default)]
    pub output_dir: Option<PathBuf>,
    /// How often an idle worker looks for a job, in milliseconds.
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    /// How many times a job may be started. A job the daemon died running is run again at the
    /// next start, unless it had been started this many times: then it is failed, so that no
    /// series can keep the daemon restarting.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// How long one job's conversion may run, in seconds, before its process is stopped and
    /// the job failed (a decoder caught in a loop must not hold the queue).
    #[serde(default = "default_job_timeout_secs")]
    pub job_timeout_secs: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            workers: default_workers(),
            output_dir: None,
            poll_interval_ms: default_poll_ms(),
            max_attempts: default_max_attempts(),
            job_timeout_secs: default_job_timeout_secs(),
        }
    }
}

fn default_workers() -> usize {
    1
}

/// The DICOM listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DicomConfig {
    /// Address the storage SCP listens on.
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// Our AE title: associations calling another title are rejected.
    #[serde(default = "default_ae_title")]
    pub ae_title: String,
    /// Accept any calling AE (true) or only those in `callers` (false).
    #[serde(default)]
    pub accept_any_caller: bool,
    /// The calling AEs allowed when `accept_any_caller` is false.
    #[serde(default)]
    pub callers: Vec<CallerConfig>,
    /// Associations served at once; further ones are rejected (transient, local limit exceeded).
    #[serde(default = "default_max_associations")]
    pub max_associations: usize,
    /// Largest PDU we accept, in bytes. We honour the peer's own maximum when we send.
    #[serde(default = "default_max_pdu")]
    pub max_pdu_length: u32,
    /// Seconds to wait for an A-ASSOCIATE-RQ after a TCP connect (DICOM's ARTIM timer).
    #[serde(default = "default_artim")]
    pub artim_timeout_secs: u64,
    /// Seconds an association may sit idle between PDUs before we abort it.
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: u64,
    /// Largest dataset received in one C-STORE, in bytes. A dataset is held in memory until it
    /// is written, so without a bound one peer sending fragments that never end could exhaust
    /// memory; a larger dataset is read and discarded, and refused with A700.
    #[serde(default = "default_max_dataset")]
    pub max_dataset_bytes: u64,
    /// Storage SOP classes other than MR that are accepted and stored but never scored, so that a
    /// PACS pushing a whole study does not fail on a rejected presentation context.
    #[serde(default = "default_other_storage")]
    pub other_storage_classes: Vec<String>,
    /// DICOM over TLS on a second port. Absent: plain DICOM only.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// The TLS listener (`[dicom.tls]`): its own port, the same AE policy and storage rules.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Address the TLS listener binds; 2762 is DICOM's registered port for TLS.
    #[serde(default = "default_tls_bind")]
    pub bind: SocketAddr,
    /// PEM file with our certificate, followed by any intermediate CA certificates.
    pub certificate: PathBuf,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
    /// PEM file of the CAs whose certificates callers must present (mutual TLS). Absent: no
    /// client certificate is asked for, and the AE allowlist alone decides.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// PEM file of certificate revocation lists issued by those CAs: a caller whose certificate
    /// (or any CA above it) is listed is refused. A CA without a list here is trusted as is.
    /// Needs `client_ca`. Read at start and at each reload (SIGHUP), like the other files.
    #[serde(default)]
    pub client_crl: Option<PathBuf>,
    /// false: the plain listener at `dicom.bind` is not opened, so every association is
    /// encrypted.
    #[serde(default = "default_true")]
    pub plain_listener: bool,
}

/// One allowed calling AE.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerConfig {
    pub ae_title: String,
    /// When set, the caller must connect from this address.
    #[serde(default)]
    pub host: Option<IpAddr>,
    /// When set, the caller must connect over TLS with a client certificate (verified against
    /// `dicom.tls.client_ca`) valid for this DNS name or IP address, one of its subjectAltNames:
    /// a device certified by the hospital cannot then call with another device's AE title.
    #[serde(default)]
    pub tls_name: Option<String>,
}

/// The durable instance store.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    #[serde(default = "default_spool_dir")]
    pub dir: PathBuf,
}

/// PostgreSQL.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Connection URL. Absent: the daemon runs a private cluster under `data_dir`.
    #[serde(default)]
    pub url: Option<String>,
    /// Where the embedded cluster lives when `url` is absent.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Connections in the pool.
    #[serde(default)]
    pub max_connections: Option<u32>,
}

/// Series completion.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackerConfig {
    /// A series is complete after this many seconds without a new instance.
    #[serde(default = "default_stable_after")]
    pub stable_after_secs: u64,
    /// How often the tracker looks for series that have become stable, in milliseconds.
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
}

/// Log output.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// Emit JSON lines instead of human-readable text.
    #[serde(default)]
    pub json: bool,
    /// A tracing filter such as "info" or "brainaged=debug"; `RUST_LOG` wins when set.
    #[serde(default)]
    pub filter: Option<String>,
}

/// ONNX Runtime.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceConfig {
    /// Execution providers in order of preference; "cpu" is always the last resort.
    #[serde(default = "default_providers")]
    pub providers: Vec<String>,
    /// Path of libonnxruntime.so; absent: `ORT_DYLIB_PATH`, then the set-up script's location.
    #[serde(default)]
    pub library_path: Option<PathBuf>,
    /// Threads inside one operator; 0 lets ONNX Runtime choose.
    #[serde(default)]
    pub intra_op_threads: usize,
    /// Directory holding model packages.
    #[serde(default = "default_models_dir")]
    pub models_dir: PathBuf,
}

fn default_bind() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 11112))
}
fn default_tls_bind() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 2762))
}
fn default_true() -> bool {
    true
}
fn default_ae_title() -> String {
    "BRAINAGED".into()
}
fn default_max_associations() -> usize {
    32
}
fn default_max_pdu() -> u32 {
    // 64 KiB is the floor the issue sets; larger PDUs cut per-PDU overhead on big MR frames.
    262_144
}
fn default_artim() -> u64 {
    30
}
fn default_idle() -> u64 {
    300
}
pub(crate) fn default_max_dataset() -> u64 {
    // Far above any single MR instance we know of (an enhanced multi-frame DWI series of 100
    // volumes is a few hundred MB), far below the memory of a host running 32 associations.
    2 << 30
}
fn default_spool_dir() -> PathBuf {
    PathBuf::from("/var/lib/brainaged/spool")
}
fn default_stable_after() -> u64 {
    30
}
fn default_poll_ms() -> u64 {
    500
}
fn default_max_attempts() -> u32 {
    3
}
fn default_job_timeout_secs() -> u64 {
    3600
}
fn default_providers() -> Vec<String> {
    vec!["cuda".into(), "cpu".into()]
}
fn default_models_dir() -> PathBuf {
    PathBuf::from("models")
}

/// Storage classes that a PACS commonly pushes beside MR images.
fn default_other_storage() -> Vec<String> {
    [
        "1.2.840.10008.5.1.4.1.1.7",     // Secondary Capture
        "1.2.840.10008.5.1.4.1.1.7.1",   // Multi-frame Single Bit SC
        "1.2.840.10008.5.1.4.1.1.7.2",   // Multi-frame Grayscale Byte SC
        "1.2.840.10008.5.1.4.1.1.7.3",   // Multi-frame Grayscale Word SC
        "1.2.840.10008.5.1.4.1.1.7.4",   // Multi-frame True Color SC
        "1.2.840.10008.5.1.4.1.1.88.11", // Basic Text SR
        "1.2.840.10008.5.1.4.1.1.88.22", // Enhanced SR
        "1.2.840.10008.5.1.4.1.1.88.33", // Comprehensive SR
        "1.2.840.10008.5.1.4.1.1.88.34", // Comprehensive 3D SR
        "1.2.840.10008.5.1.4.1.1.88.59", // Key Object Selection
        "1.2.840.10008.5.1.4.1.1.11.1",  // Grayscale Softcopy Presentation State
        "1.2.840.10008.5.1.4.1.1.11.2",  // Color Softcopy Presentation State
        "1.2.840.10008.5.1.4.1.1.66",    // Raw Data
        "1.2.840.10008.5.1.4.1.1.104.1", // Encapsulated PDF
        "1.2.840.10008.5.1.4.1.1.4.2",   // MR Spectroscopy
        "1.2.840.10008.5.1.4.1.1.481.1", // RT Image
        "1.2.840.10008.5.1.4.1.1.2",     // CT Image (mixed studies)
        "1.2.840.10008.5.1.4.1.1.2.1",   // Enhanced CT
        "1.2.840.10008.5.1.4.1.1.128",   // PET
        "1.2.840.10008.5.1.4.1.1.30",    // Parametric Map
        "1.2.840.10008.5.1.4.1.1.66.4",  // Segmentation
        "1.3.46.670589.11.0.0.12.1",     // Philips Private MR Spectrum Storage
        "1.3.46.670589.11.0.0.12.2",     // Philips Private MR Series Data Storage
        "1.3.46.670589.11.0.0.12.4",     // Philips Private MR Examcard Storage
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

impl Default for DicomConfig {
    fn default() -> Self {
        Self {
            bind: default_bind(),
            ae_title: default_ae_title(),
            accept_any_caller: false,
            callers: Vec::new(),
            max_associations: default_max_associations(),
            max_pdu_length: default_max_pdu(),
            artim_timeout_secs: default_artim(),
            idle_timeout_secs: default_idle(),
            max_dataset_bytes: default_max_dataset(),
            other_storage_classes: default_other_storage(),
            tls: None,
        }
    }
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: default_spool_dir(),
        }
    }
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            stable_after_secs: default_stable_after(),
            poll_interval_ms: default_poll_ms(),
        }
    }
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            providers: default_providers(),
            library_path: None,
            intra_op_threads: 0,
            models_dir: default_models_dir(),
        }
    }
}

impl Config {
    /// Reads `file` (when given) and applies `BRAINAGED__SECTION__KEY` overrides.
    ///
    /// The separator is set explicitly to a double underscore because keys themselves contain
    /// single underscores (`BRAINAGED__DICOM__AE_TITLE` → `dicom.ae_title`).
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("BRAINAGED")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("dicom.other_storage_classes")
                .with_list_parse_key("inference.providers"),
        );
        let cfg: Config = builder.build()?.try_deserialize()?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let ae = self.dicom.ae_title.trim();
        if ae.is_empty() || ae.len() > 16 {
            return Err(ConfigError::Invalid(format!(
                "dicom.ae_title must be 1 to 16 characters, got {:?}",
                self.dicom.ae_title
            )));
        }
        if self.dicom.max_pdu_length < 65_536 {
            return Err(ConfigError::Invalid(
                "dicom.max_pdu_length must be at least 65536".into(),
            ));
        }
        if self.dicom.max_associations == 0 {
            return Err(ConfigError::Invalid(
                "dicom.max_associations must be at least 1".into(),
            ));
        }
        self.validate_tls_names()
    }

    /// A caller's `tls_name` is a DNS name or an IP address, and is checked only against a
    /// certificate the
    /// daemon verified: without `dicom.tls.client_ca` that caller could never associate.
    fn validate_tls_names(&self) -> Result<(), ConfigError> {
        let verified = self
            .dicom
            .tls
            .as_ref()
            .is_some_and(|t| t.client_ca.is_some());
        for caller in &self.dicom.callers {
            let Some(name) = &caller.tls_name else {
                continue;
            };
            if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
                return Err(ConfigError::Invalid(format!(
                    "dicom.callers: tls_name {name:?} of {} is neither a DNS name nor an IP address",
                    caller.ae_title
                )));
            }
            if !verified {
                return Err(ConfigError::Invalid(format!(
                    "dicom.callers: {} has a tls_name, which needs dicom.tls.client_ca",
                    caller.ae_title
                )));
            }
        }
        Ok(())
    }

    /// The settings that differ in `new` but take effect only at the next start: everything but
    /// the called AE title, the calling-AE allowlist and the contents of the TLS files, which a
    /// reload (SIGHUP) applies. Named as in the configuration file, for the operator's log.
    pub fn restart_only_changes(&self, new: &Config) -> Vec<&'static str> {
        let (a, b) = (&self.dicom, &new.dicom);
        let both_tls = a.tls.as_ref().zip(b.tls.as_ref());
        [
            ("dicom.bind", a.bind != b.bind),
            (
                "dicom.max_associations",
                a.max_associations != b.max_associations,
            ),
            ("dicom.max_pdu_length", a.max_pdu_length != b.max_pdu_length),
            (
                "dicom.artim_timeout_secs",
                a.artim_timeout_secs != b.artim_timeout_secs,
            ),
            (
                "dicom.idle_timeout_secs",
                a.idle_timeout_secs != b.idle_timeout_secs,
            ),
            (
                "dicom.max_dataset_bytes",
                a.max_dataset_bytes != b.max_dataset_bytes,
            ),
            (
                "dicom.other_storage_classes",
                a.other_storage_classes != b.other_storage_classes,
            ),
            ("dicom.tls", a.tls.is_some() != b.tls.is_some()),
            (
                "dicom.tls.bind",
                both_tls.is_some_and(|(x, y)| x.bind != y.bind),
            ),
            (
                "dicom.tls.plain_listener",
                both_tls.is_some_and(|(x, y)| x.plain_listener != y.plain_listener),
            ),
            ("spool", self.spool != new.spool),
            ("database", self.database != new.database),
            ("tracker", self.tracker != new.tracker),
            ("logging", self.logging != new.logging),
            ("inference", self.inference != new.inference),
            ("pipeline", self.pipeline != new.pipeline),
            ("classify", self.classify != new.classify),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
    }

    /// Where converted volumes go.
    pub fn output_dir(&self) -> PathBuf {
        self.pipeline
            .output_dir
            .clone()
            .unwrap_or_else(|| self.data_dir().join("derived"))
    }

    /// Where the daemon keeps state that is not the spool: the embedded cluster, job outputs.
    pub fn data_dir(&self) -> PathBuf {
        self.database.data_dir.clone().unwrap_or_else(|| {
            self.spool
                .dir
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_without_a_file() {
        let cfg: Config = toml::from_str("").unwrap();
        assert_eq!(cfg.dicom.ae_title, "BRAINAGED");
        assert_eq!(cfg.tracker.stable_after_secs, 30);
        assert!(cfg.dicom.max_pdu_length >= 65_536);
        assert!(!cfg.dicom.accept_any_caller);
    }

    #[test]
    fn contract_keys_parse() {
        let cfg: Config = toml::from_str(
            r#"
            [dicom]
            bind = "127.0.0.1:4242"
            ae_title = "X"
            accept_any_caller = false
            [[dicom.callers]]
            ae_title = "SCANNER1"
            host = "10.1.2.3"
            [spool]
            dir = "/tmp/s"
            [database]
            url = "postgres://localhost/x"
            [tracker]
            stable_after_secs = 2
            "#,
        )
        .unwrap();
        assert_eq!(cfg.dicom.callers[0].host, Some("10.1.2.3".parse().unwrap()));
        assert_eq!(cfg.tracker.stable_after_secs, 2);
        assert_eq!(cfg.database.url.as_deref(), Some("postgres://localhost/x"));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<Config>("[dicom]\nae_titel = \"X\"").is_err());
    }

    /// A caller's `tls_name` must be a DNS name or an IP address, and needs verified client
    /// certificates.
    #[test]
    fn tls_names_need_a_client_ca_and_a_dns_name() {
        let with = |tls: &str, name: &str| {
            let text = format!(
                "[dicom]\n{tls}\n[[dicom.callers]]\nae_title = \"CT1\"\ntls_name = \"{name}\"\n"
            );
            toml::from_str::<Config>(&text).unwrap().validate()
        };
        let mutual =
            "[dicom.tls]\ncertificate = \"c.pem\"\nprivate_key = \"k.pem\"\nclient_ca = \"ca.pem\"";
        let server_only = "[dicom.tls]\ncertificate = \"c.pem\"\nprivate_key = \"k.pem\"";
        assert!(with(mutual, "ct1.radiology.example").is_ok());
        assert!(with(mutual, "10.1.2.3").is_ok());
        assert!(with(mutual, "fd00::17").is_ok());
        let err = with(server_only, "ct1.radiology.example").unwrap_err();
        assert!(
            err.to_string().contains("needs dicom.tls.client_ca"),
            "{err}"
        );
        let err = with("", "ct1.radiology.example").unwrap_err();
        assert!(
            err.to_string().contains("needs dicom.tls.client_ca"),
            "{err}"
        );
        let err = with(mutual, "not a name").unwrap_err();
        assert!(err.to_string().contains("neither a DNS name"), "{err}");
    }

    /// A reload applies callers, the AE title and TLS file contents; every other change is
    /// reported by its key, and a section by its name.
    #[test]
    fn restart_only_changes_name_what_a_reload_cannot_apply() {
        let parse = |text: &str| toml::from_str::<Config>(text).unwrap();
        let tls = "[dicom.tls]\ncertificate = \"c.pem\"\nprivate_key = \"k.pem\"\n";
        let before = parse(&format!("[dicom]\nae_title = \"A\"\n{tls}"));
        let reloadable = parse(
            "[dicom]\nae_title = \"B\"\naccept_any_caller = true\n\
             [[dicom.callers]]\nae_title = \"CT1\"\n\
             [dicom.tls]\ncertificate = \"new.pem\"\nprivate_key = \"new.key\"\n\
             client_ca = \"ca.pem\"\nclient_crl = \"crl.pem\"\n",
        );
        assert!(before.restart_only_changes(&before).is_empty());
        assert!(before.restart_only_changes(&reloadable).is_empty());

        let other = parse(
            "[dicom]\nae_title = \"A\"\nbind = \"127.0.0.1:1\"\nmax_pdu_length = 65536\n\
             [dicom.tls]\ncertificate = \"c.pem\"\nprivate_key = \"k.pem\"\n\
             plain_listener = false\n\
             [tracker]\nstable_after_secs = 2\n",
        );
        assert_eq!(
            before.restart_only_changes(&other),
            [
                "dicom.bind",
                "dicom.max_pdu_length",
                "dicom.tls.plain_listener",
                "tracker"
            ]
        );
        let without_tls = parse("[dicom]\nae_title = \"A\"\n");
        assert_eq!(before.restart_only_changes(&without_tls), ["dicom.tls"]);
    }
}
