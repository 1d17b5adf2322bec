//! TLS for PostgreSQL connections, with libpq's `sslmode` semantics, on rustls (ring provider: no
//! C toolchain beyond what ring needs, no OpenSSL).
//!
//! | sslmode | encrypted | certificate checked | host name checked |
//! |---|---|---|---|
//! | `disable` | no | – | – |
//! | `allow`, `prefer` | if the server offers it | no | no |
//! | `require` | yes | only when a root certificate is given (as libpq) | no |
//! | `verify-ca` | yes | yes | no |
//! | `verify-full` | yes | yes | yes |
//!
//! Over a Unix-domain socket (a host that is a folder) there is no TLS whatever the mode, as with
//! libpq: the connection never leaves the machine, and the server refuses TLS there.
//!
//! Root certificates: `sslrootcert=<file>` (PEM), else `~/.postgresql/root.crt` when it exists,
//! else the system's trust store; `sslrootcert=system` asks for the system store explicitly.
//! A client certificate is `sslcert=<file>` with `sslkey=<file>`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Never encrypt.
    Disable,
    /// Encrypt if the server wants to (treated as `prefer`).
    Allow,
    /// Encrypt if the server can (libpq's default).
    #[default]
    Prefer,
    /// Always encrypt; check the certificate only against a given root.
    Require,
    /// Always encrypt; the certificate must chain to a trusted root.
    VerifyCa,
    /// Always encrypt; the certificate must chain to a trusted root and name the host.
    VerifyFull,
}

impl std::str::FromStr for SslMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }
}

impl SslMode {
    /// What tokio-postgres is told: whether TLS is required or only attempted.
    pub(crate) fn driver_mode(self) -> tokio_postgres::config::SslMode {
        match self {
            Self::Disable => tokio_postgres::config::SslMode::Disable,
            Self::Allow | Self::Prefer => tokio_postgres::config::SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => tokio_postgres::config::SslMode::Require,
        }
    }
}

/// TLS settings taken from the connection URL.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// The mode.
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file, or `system`.
    pub root_cert: Option<String>,
    /// `sslcert`: client certificate chain (PEM).
    pub client_cert: Option<PathBuf>,
    /// `sslkey`: client private key (PEM).
    pub client_key: Option<PathBuf>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect)
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err("no usable certificate in the system trust store; give one with sslrootcert=<file>".into());
    }
    Ok(roots)
}

impl TlsOptions {
    /// The root store, or `None` when `require` has nothing to check against.
    fn roots(&self) -> Result<Option<RootCertStore>, String> {
        let file = match self.root_cert.as_deref() {
            Some("system") => return system_roots().map(Some),
            Some(file) => Some(PathBuf::from(file)),
            None => std::env::var_os("HOME")
                .map(|h| Path::new(&h).join(".postgresql/root.crt"))
                .filter(|p| p.exists()),
        };
        match file {
            Some(file) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(&file)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("{}: not a usable CA certificate: {e}", file.display()))?;
                }
                Ok(Some(roots))
            }
            None if matches!(self.mode, SslMode::VerifyCa | SslMode::VerifyFull) => system_roots().map(Some),
            None => Ok(None),
        }
    }

    /// The rustls configuration for this mode (`None` for `disable`).
    pub fn client_config(&self) -> Result<Option<ClientConfig>, String> {
        let verifier: Arc<dyn ServerCertVerifier> = match self.mode {
            SslMode::Disable => return Ok(None),
            SslMode::Allow | SslMode::Prefer => Arc::new(LenientVerifier {
                provider: provider(),
                chain: None,
            }),
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => match self.roots()? {
                None => Arc::new(LenientVerifier {
                    provider: provider(),
                    chain: None,
                }),
                Some(roots) => {
                    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| format!("cannot build the certificate verifier: {e}"))?;
                    if self.mode == SslMode::VerifyFull {
                        webpki
                    } else {
                        Arc::new(LenientVerifier {
                            provider: provider(),
                            chain: Some(webpki),
                        })
                    }
                }
            },
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("cannot read the private key {}: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("client certificate {}: {e}", cert.display()))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err("sslcert and sslkey must be given together".into()),
        };
        Ok(Some(config))
    }
}

/// The verifier of libpq's weaker modes: `verify-ca` (`chain`: the chain must verify, but the
/// name in the certificate may differ from the host), and `prefer` and `require` without a root
/// (no `chain`: encrypted, but any certificate is taken, as libpq does). Handshake signatures are
/// always checked, so the peer holds the certificate's key.
#[derive(Debug)]
struct LenientVerifier {
    provider: Arc<rustls::crypto::CryptoProvider>,
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for LenientVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_map_to_the_driver() {
        assert_eq!("verify-full".parse::<SslMode>(), Ok(SslMode::VerifyFull));
        assert!("verify".parse::<SslMode>().unwrap_err().contains("verify-ca"));
        assert_eq!(
            SslMode::VerifyCa.driver_mode(),
            tokio_postgres::config::SslMode::Require
        );
        let options = TlsOptions {
            mode: SslMode::Require,
            root_cert: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        };
        assert!(options.client_config().unwrap_err().contains("/nonexistent/ca.pem"));
        assert!(TlsOptions::default().client_config().unwrap().is_some());
        let disabled = TlsOptions {
            mode: SslMode::Disable,
            ..TlsOptions::default()
        };
        assert!(disabled.client_config().unwrap().is_none());
    }
}
