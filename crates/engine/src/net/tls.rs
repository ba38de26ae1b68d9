//! TLS settings for one side of the sync (`[source.tls]`, `[target.tls]`, `--source-tls-*`), checked
//! when the config is loaded and turned into one rustls client config, shared by every connection
//! to that side (and to every node discovered behind it); and a failed handshake put into words.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// TLS settings as written in the config file or given as flags. Used only with a `rediss://`
/// URL.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM file with the CA certificate(s) that sign the server's certificate. Default: the
    /// public CAs (Mozilla's list, built in).
    pub ca_file: Option<PathBuf>,
    /// PEM file with ferry's client certificate (chain), for servers that require one
    /// (`tls-auth-clients yes`). Needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM file with the private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must carry. Default: the host in the URL (for cluster
    /// nodes found later, each node's own host).
    pub server_name: Option<String>,
    /// Lowest TLS version offered: "1.2" (default) or "1.3".
    pub min_version: Option<TlsVersion>,
}

impl TlsSection {
    pub fn is_empty(&self) -> bool {
        *self == TlsSection::default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

impl std::str::FromStr for TlsVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<TlsVersion, String> {
        match s {
            "1.2" => Ok(TlsVersion::Tls12),
            "1.3" => Ok(TlsVersion::Tls13),
            _ => Err(format!("{s:?} is not a TLS version: use 1.2 or 1.3")),
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        })
    }
}

/// Checked settings and the rustls config built from them, once. Cloning is cheap (two `Arc`s),
/// so an endpoint for another node of the same deployment shares it.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
    settings: Arc<TlsSection>,
    /// `server_name`, parsed.
    server_name: Option<ServerName<'static>>,
    /// "source" or "target": names the settings in hints.
    role: &'static str,
}

impl Tls {
    /// Reads and checks the files named in `section` and builds the client config. Every error
    /// names the setting and the file.
    pub fn load(role: &'static str, section: &TlsSection) -> Result<Tls, Error> {
        let bad = |what: String| Error::Config(format!("{role} TLS {what}"));
        let mut roots = RootCertStore::empty();
        match &section.ca_file {
            Some(path) => {
                let certs = read_certs(path).map_err(|e| bad(format!("ca_file {e}")))?;
                for cert in certs {
                    roots.add(cert).map_err(|e| {
                        bad(format!(
                            "ca_file {}: a certificate in it is not usable as a CA ({e})",
                            path.display()
                        ))
                    })?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let versions: &[&'static rustls::SupportedProtocolVersion] = match section.min_version {
            Some(TlsVersion::Tls13) => &[&rustls::version::TLS13],
            _ => &[&rustls::version::TLS13, &rustls::version::TLS12],
        };
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .map_err(|e| bad(format!("settings: {e}")))?
                .with_root_certificates(roots);
        let config = match (&section.cert_file, &section.key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert_path), Some(key_path)) => {
                let chain = read_certs(cert_path).map_err(|e| bad(format!("cert_file {e}")))?;
                let key = read_key(key_path).map_err(|e| bad(format!("key_file {e}")))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    bad(format!(
                        "key_file {} does not go with cert_file {} ({e})",
                        key_path.display(),
                        cert_path.display()
                    ))
                })?
            }
            (Some(_), None) => {
                return Err(bad(
                    "settings: cert_file is given without key_file: a client certificate needs both (or neither)"
                        .into(),
                ));
            }
            (None, Some(_)) => {
                return Err(bad(
                    "settings: key_file is given without cert_file: a client certificate needs both (or neither)"
                        .into(),
                ));
            }
        };
        let server_name = match &section.server_name {
            None => None,
            Some(name) => Some(ServerName::try_from(name.clone()).map_err(|_| {
                bad(format!(
                    "server_name {name:?} is neither a DNS name nor an IP address"
                ))
            })?),
        };
        Ok(Tls {
            config: Arc::new(config),
            settings: Arc::new(section.clone()),
            server_name,
            role,
        })
    }

    /// The rustls config, shared.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    pub fn settings(&self) -> &TlsSection {
        &self.settings
    }

    /// The name to verify the certificate of a server at `host` against: `server_name` if set,
    /// else `host` itself.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        match &self.server_name {
            Some(name) => Ok(name.clone()),
            None => ServerName::try_from(host.to_string()).map_err(|_| {
                format!(
                    "{host:?} is not a name a certificate can carry; set server_name in [{}.tls]",
                    self.role
                )
            }),
        }
    }

    /// Why a handshake failed, in words, ending with rustls's own name for it.
    pub fn explain(&self, err: &rustls::Error) -> String {
        let role = self.role;
        let s = &self.settings;
        let short = short_name(err);
        let why = match err {
            rustls::Error::InvalidCertificate(e) => match e {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    match &s.ca_file {
                        Some(ca) => format!(
                            "the server's certificate is not trusted: it is not signed by the CA in {}",
                            ca.display()
                        ),
                        None => format!(
                            "the server's certificate is not trusted: it is not signed by a public CA; \
                         give the CA that signed it as [{role}.tls] ca_file (or --{role}-tls-ca)"
                        ),
                    }
                }
                CertificateError::Expired => "the server's certificate has expired".to_string(),
                CertificateError::ExpiredContext { not_after, .. } => format!(
                    "the server's certificate has expired (on {})",
                    utc(not_after.as_secs())
                ),
                CertificateError::NotValidYet => {
                    "the server's certificate is not valid yet (check the clocks)".to_string()
                }
                CertificateError::NotValidYetContext { not_before, .. } => format!(
                    "the server's certificate is not valid yet: it is valid from {} (check the clocks)",
                    utc(not_before.as_secs())
                ),
                CertificateError::NotValidForName => format!(
                    "the server's certificate is not valid for the name ferry connected by; \
                     connect by a name it carries or set [{role}.tls] server_name"
                ),
                CertificateError::NotValidForNameContext {
                    expected,
                    presented,
                } => format!(
                    "the server's certificate is not valid for {}: it names {}; connect by a \
                     name it carries or set [{role}.tls] server_name",
                    expected.to_str(),
                    if presented.is_empty() {
                        "no name".to_string()
                    } else {
                        presented
                            .iter()
                            .map(|n| bare_name(n))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
                CertificateError::Revoked => "the server's certificate is revoked".to_string(),
                _ => "the server's certificate is not accepted".to_string(),
            },
            rustls::Error::AlertReceived(AlertDescription::ProtocolVersion)
            | rustls::Error::PeerIncompatible(
                rustls::PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig
                | rustls::PeerIncompatible::ServerDoesNotSupportTls12Or13
                | rustls::PeerIncompatible::SupportedVersionsExtensionRequired,
            ) => match s.min_version {
                Some(TlsVersion::Tls13) => format!(
                    "the server does not speak TLS 1.3, and [{role}.tls] min_version is 1.3"
                ),
                _ => "the server speaks neither TLS 1.2 nor TLS 1.3".to_string(),
            },
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => format!(
                "the server requires a client certificate: give [{role}.tls] cert_file and \
                 key_file (or --{role}-tls-cert and --{role}-tls-key)"
            ),
            rustls::Error::AlertReceived(
                AlertDescription::UnknownCA
                | AlertDescription::BadCertificate
                | AlertDescription::CertificateUnknown
                | AlertDescription::AccessDenied
                | AlertDescription::CertificateExpired,
            ) if s.cert_file.is_some() => format!(
                "the server does not accept the client certificate in {}",
                s.cert_file.as_deref().unwrap_or(Path::new("")).display()
            ),
            rustls::Error::AlertReceived(AlertDescription::HandshakeFailure)
                if s.cert_file.is_none() =>
            {
                format!(
                    "the server refused the handshake: it may require a client certificate \
                     ([{role}.tls] cert_file and key_file)"
                )
            }
            rustls::Error::AlertReceived(a) => format!("the server refused the handshake ({a:?})"),
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
                "the server does not answer in TLS: is this its TLS port (tls-port)? A plain \
                 port takes redis:// URLs"
                    .to_string()
            }
            rustls::Error::PeerIncompatible(_) => {
                "the server offers no TLS cipher or key exchange in common with ferry".to_string()
            }
            other => other.to_string(),
        };
        format!("{why} ({short})")
    }
}

/// Equal when set up from the same settings.
impl PartialEq for Tls {
    fn eq(&self, other: &Tls) -> bool {
        self.settings == other.settings
    }
}

impl Eq for Tls {}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("settings", &self.settings)
            .finish()
    }
}

/// rustls's own name for the failure, e.g. `UnknownIssuer`, `Expired`, `ProtocolVersion`.
fn short_name(err: &rustls::Error) -> String {
    let debug = match err {
        rustls::Error::InvalidCertificate(e) => format!("{e:?}"),
        rustls::Error::AlertReceived(a) => format!("{a:?}"),
        rustls::Error::PeerIncompatible(p) => format!("{p:?}"),
        rustls::Error::PeerMisbehaved(p) => format!("{p:?}"),
        rustls::Error::InvalidMessage(m) => format!("{m:?}"),
        e => format!("{e:?}"),
    };
    let name: String = debug
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    match name.strip_suffix("Context") {
        Some(base) if !base.is_empty() => base.to_string(),
        _ => name,
    }
}

/// A name as rustls lists it (`DnsName("a.b")`, `IpAddress(::1)`) without the wrapping.
fn bare_name(presented: &str) -> &str {
    let inner = match (presented.find('('), presented.strip_suffix(')')) {
        (Some(open), Some(body)) => &body[open + 1..],
        _ => presented,
    };
    inner.trim_matches('"')
}

/// Every certificate in a PEM file; an error names the file and what is wrong with it.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!(
            "{} holds no PEM private key (-----BEGIN PRIVATE KEY-----)",
            path.display()
        ),
        e => format!("{} is not valid PEM: {e}", path.display()),
    })
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: cannot read it: {e}", path.display()))
}

/// Seconds since 1970 as `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_print_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(978_307_200), "2001-01-01 00:00:00 UTC");
        assert_eq!(utc(1_709_210_096), "2024-02-29 12:34:56 UTC");
    }

    #[test]
    fn short_names() {
        let expired = rustls::Error::InvalidCertificate(CertificateError::ExpiredContext {
            time: rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(9)),
            not_after: rustls::pki_types::UnixTime::since_unix_epoch(
                std::time::Duration::from_secs(1),
            ),
        });
        assert_eq!(short_name(&expired), "Expired");
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(short_name(&unknown), "UnknownIssuer");
        let alert = rustls::Error::AlertReceived(AlertDescription::ProtocolVersion);
        assert_eq!(short_name(&alert), "ProtocolVersion");
        assert_eq!(
            short_name(&rustls::Error::HandshakeNotComplete),
            "HandshakeNotComplete"
        );
    }

    #[test]
    fn presented_names_lose_their_wrapping() {
        assert_eq!(bare_name("DnsName(\"redis.test\")"), "redis.test");
        assert_eq!(bare_name("IpAddress(::1)"), "::1");
        assert_eq!(bare_name("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn versions_parse() {
        assert_eq!("1.3".parse::<TlsVersion>(), Ok(TlsVersion::Tls13));
        assert!("1.1".parse::<TlsVersion>().is_err());
    }
}
