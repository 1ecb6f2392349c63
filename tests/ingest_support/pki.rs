//! A throwaway public-key infrastructure made with the `openssl` command for each TLS test, and
//! the DCMTK and pynetdicom peers that use it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;

use brainaged::config::{DicomConfig, TlsConfig};

use super::{AE_TITLE, run, support_script, test_config, text};

/// An OpenSSL configuration with the extensions each certificate needs; webpki and Python's
/// `ssl` both insist on v3 certificates with these.
const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = CA:FALSE
subjectAltName = DNS:localhost,IP:127.0.0.1
extendedKeyUsage = serverAuth
[client]
basicConstraints = CA:FALSE
extendedKeyUsage = clientAuth
subjectAltName = DNS:scanner1.test
[client_ct]
basicConstraints = CA:FALSE
extendedKeyUsage = clientAuth
subjectAltName = DNS:ct1.test
[client_ip]
basicConstraints = CA:FALSE
extendedKeyUsage = clientAuth
subjectAltName = IP:10.20.30.40
[revocations]
database = index.txt
new_certs_dir = .
certificate = ca.pem
private_key = ca.key
default_md = sha256
default_crl_days = 2
crlnumber = crlnumber
crl_extensions = crl_ext
[crl_ext]
authorityKeyIdentifier = keyid:always
";

/// What `openssl req -newkey` takes for the clients' keys.
pub const EC_KEY: &str = "ec -pkeyopt ec_paramgen_curve:P-256";

/// PEM files for one test: `ca` signs `server`, `client` (named scanner1.test), `ct` (ct1.test)
/// and `revoked`, which `crl.pem` (a v2 CRL of `ca`) lists; `stranger` is a client of
/// `other_ca`.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(pki.path("openssl.cnf"), OPENSSL_CNF).unwrap();
        pki.make_ca("ca", "Test-Hospital-CA");
        pki.make_ca("other_ca", "Some-Other-CA");
        // RSA for the server, as most hospital PKIs issue; EC for the clients: both kinds of
        // key and signature are exercised.
        pki.make_leaf("server", "ca", "server", "brainaged", "rsa:2048");
        let ec = EC_KEY;
        pki.make_leaf("client", "ca", "client", "scanner1", ec);
        pki.make_leaf("ct", "ca", "client_ct", "ct1", ec);
        pki.make_leaf("stranger", "other_ca", "client", "stranger", ec);
        pki.make_leaf("revoked", "ca", "client", "retired-scanner", ec);
        std::fs::write(pki.path("index.txt"), "").unwrap();
        std::fs::write(pki.path("crlnumber"), "01\n").unwrap();
        pki.revoke("revoked");
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn pem(&self, name: &str) -> PathBuf {
        self.path(&format!("{name}.pem"))
    }

    pub fn key(&self, name: &str) -> PathBuf {
        self.path(&format!("{name}.key"))
    }

    /// A self-signed CA; `cn` without spaces.
    pub fn make_ca(&self, name: &str, cn: &str) {
        self.openssl(&format!(
            "req -x509 -config openssl.cnf -extensions ca -newkey ec \
             -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN={cn} \
             -keyout {name}.key -out {name}.pem"
        ));
    }

    /// A certificate issued by `ca` with the `extensions` section of the configuration;
    /// `key` is what `-newkey` takes after it (`rsa:2048`, or `ec -pkeyopt ...`).
    pub fn make_leaf(&self, name: &str, ca: &str, extensions: &str, cn: &str, key: &str) {
        self.make_leaf_for(name, ca, extensions, cn, key, 2);
    }

    /// As [`make_leaf`](Self::make_leaf), valid for `days`.
    pub fn make_leaf_for(
        &self,
        name: &str,
        ca: &str,
        extensions: &str,
        cn: &str,
        key: &str,
        days: u32,
    ) {
        self.openssl(&format!(
            "req -new -config openssl.cnf -newkey {key} -nodes -subj /CN={cn} \
             -keyout {name}.key -out {name}.csr"
        ));
        self.openssl(&format!(
            "x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial -days {days} \
             -extfile openssl.cnf -extensions {extensions} -out {name}.pem"
        ));
    }

    /// The SHA-256 fingerprint of `name`.pem as openssl prints it, lower case, no colons.
    pub fn fingerprint(&self, name: &str) -> String {
        let out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(self.pem(name))
            .output()
            .expect("openssl");
        fingerprint_printed(&out.stdout)
    }

    /// When `name`.pem stops being valid, as openssl reads it.
    pub fn not_after(&self, name: &str) -> chrono::DateTime<chrono::Utc> {
        let out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-enddate", "-in"])
            .arg(self.pem(name))
            .output()
            .expect("openssl");
        let text = String::from_utf8(out.stdout).unwrap();
        let date = text
            .trim()
            .trim_start_matches("notAfter=")
            .trim_end_matches(" GMT");
        chrono::NaiveDateTime::parse_from_str(date, "%b %e %H:%M:%S %Y")
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            .and_utc()
    }

    /// Revokes `name`.pem and writes the CA's new `crl.pem`, as a hospital's CA does when a
    /// device is retired.
    pub fn revoke(&self, name: &str) {
        self.openssl(&format!(
            "ca -config openssl.cnf -name revocations -revoke {name}.pem"
        ));
        self.openssl("ca -config openssl.cnf -name revocations -gencrl -out crl.pem");
    }

    /// Makes `name` the server's certificate and key, as renewing it in place does.
    pub fn install_server(&self, name: &str) {
        std::fs::copy(self.pem(name), self.pem("server")).unwrap();
        std::fs::copy(self.key(name), self.key("server")).unwrap();
    }

    /// The SHA-256 fingerprint of the certificate the TLS server on `port` shows (openssl
    /// s_client with the `client` certificate), as [`fingerprint`](Self::fingerprint) gives it.
    pub fn served_fingerprint(&self, port: u16) -> String {
        let script = format!(
            "openssl s_client -connect 127.0.0.1:{port} -cert client.pem -key client.key \
             -CAfile ca.pem </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .current_dir(self.dir.path())
            .output()
            .expect("sh");
        fingerprint_printed(&out.stdout)
    }

    pub fn openssl(&self, args: &str) {
        let out = std::process::Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(self.dir.path())
            .output()
            .expect("openssl (is it installed?)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `[dicom.tls]` on a loopback port with our server certificate.
    pub fn tls_config(&self, client_ca: bool, plain_listener: bool) -> TlsConfig {
        TlsConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            certificate: self.pem("server"),
            private_key: self.key("server"),
            client_ca: client_ca.then(|| self.pem("ca")),
            client_crl: None,
            plain_listener,
        }
    }
}

/// The tests' DICOM configuration ([`test_config`]) with `[dicom.tls]` set to `tls`.
pub fn with_tls(tls: TlsConfig) -> DicomConfig {
    DicomConfig {
        tls: Some(tls),
        ..test_config()
    }
}

/// The hex of openssl's `sha256 Fingerprint=AB:CD:...` line, lower case, no colons.
fn fingerprint_printed(stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(stdout);
    let (_, hex) = text
        .trim()
        .split_once('=')
        .unwrap_or_else(|| panic!("no fingerprint in {text:?}"));
    hex.replace(':', "").to_lowercase()
}

/// DCMTK's echoscu (verbose) calling as `calling_ae` to `port`: over TLS with the certificate
/// `cert` of the [`Pki`] (trusting its CA), or plain when `cert` is `None`. A rejection's reason
/// is in its output; pynetdicom's can be lost when it reads a fast rejection before it has
/// looked at its socket (it then takes the rejection for a failed connection and logs nothing).
pub async fn dcmtk_echo(pki: &Pki, cert: Option<&str>, calling_ae: &str, port: u16) -> Output {
    let mut args: Vec<String> = Vec::new();
    if let Some(name) = cert {
        let path = |p: PathBuf| p.display().to_string();
        args.extend([
            "+tls".into(),
            path(pki.key(name)),
            path(pki.pem(name)),
            "-pw".into(),
        ]);
        args.extend(["+cf".into(), path(pki.pem("ca"))]);
    }
    args.extend(["-v", "-aet", calling_ae, "-aec", AE_TITLE, "127.0.0.1"].map(String::from));
    args.push(port.to_string());
    run("/usr/bin/echoscu", &args).await
}

/// Asserts that echoscu was refused at the association for its calling AE title.
pub fn assert_calling_ae_refused(out: &Output) {
    assert!(!out.status.success(), "{}", text(out));
    assert!(
        text(out).contains("Calling AE Title Not Recognized"),
        "{}",
        text(out)
    );
}

/// How the pynetdicom peer connects.
pub enum Peer<'a> {
    /// TLS trusting `ca`, with no client certificate.
    Anonymous,
    /// TLS with this client certificate (name in the [`Pki`]).
    Certified(&'a str),
    /// Plain DICOM, no TLS at all.
    Plain,
}

/// Sends `folders` with pynetdicom (a C-ECHO first on each association) to `port`, calling as
/// PYNETDICOM.
pub async fn send(
    pki: &Pki,
    peer: Peer<'_>,
    port: u16,
    folders: &[&Path],
) -> (Output, serde_json::Value) {
    send_as(pki, peer, "PYNETDICOM", port, folders).await
}

/// As [`send`], calling as `calling_ae`.
pub async fn send_as(
    pki: &Pki,
    peer: Peer<'_>,
    calling_ae: &str,
    port: u16,
    folders: &[&Path],
) -> (Output, serde_json::Value) {
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(support_script("send_pynetdicom.py"))
        .args(["127.0.0.1", &port.to_string(), AE_TITLE, calling_ae])
        .args(folders)
        .env("SCU_ECHO", "1");
    match peer {
        Peer::Plain => {}
        Peer::Anonymous => {
            cmd.env("SCU_TLS_CA", pki.pem("ca"));
        }
        Peer::Certified(name) => {
            cmd.env("SCU_TLS_CA", pki.pem("ca"))
                .env("SCU_TLS_CERT", pki.pem(name))
                .env("SCU_TLS_KEY", pki.key(name));
        }
    }
    let out = cmd.output().await.expect("python3 with pynetdicom");
    assert!(
        out.status.success(),
        "pynetdicom sender failed: {}",
        text(&out)
    );
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("sender printed no JSON ({e}): {}", text(&out)));
    (out, report)
}
