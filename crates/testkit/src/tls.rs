//! Certificates made at test time (with `rcgen`), written as PEM files into a temp dir, for
//! `redis-server --tls-port` ([`crate::Server::start_tls`]) and for ferry's TLS settings.
//!
//! One CA signs a server certificate for `127.0.0.1` and `localhost`, a client certificate, a
//! server certificate that expired in 2001, one that expires in [`SOON_DAYS`] days and one for
//! another name only (`redis.test`); a second, unrelated CA signs nothing the servers use.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use time::OffsetDateTime;

/// Days from now until [`TlsFiles::soon_cert`] expires.
pub const SOON_DAYS: i64 = 10;

/// The name the [`TlsFiles::named_cert`] certificate carries, and no other.
pub const OTHER_NAME: &str = "redis.test";

/// PEM files for TLS tests; removed on drop.
pub struct TlsFiles {
    /// The CA that signs every certificate below.
    pub ca: PathBuf,
    /// Server certificate for `127.0.0.1` and `localhost`, and its key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Client certificate (for `--tls-auth-clients yes`), and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// Server certificate for `127.0.0.1` and `localhost`, valid only in the year 2000.
    pub expired_cert: PathBuf,
    pub expired_key: PathBuf,
    /// Server certificate for `127.0.0.1` and `localhost` that expires [`SOON_DAYS`] days
    /// from when it was made.
    pub soon_cert: PathBuf,
    pub soon_key: PathBuf,
    /// Server certificate for [`OTHER_NAME`] only.
    pub named_cert: PathBuf,
    pub named_key: PathBuf,
    /// A CA that signed none of these.
    pub other_ca: PathBuf,
    dir: tempfile::TempDir,
}

impl TlsFiles {
    /// Makes the CAs, certificates and keys and writes them as PEM files.
    pub fn generate() -> TlsFiles {
        let dir = tempfile::Builder::new()
            .prefix("ferry-tls-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir for certificates: {e}"));
        let write = |name: &str, pem: String| -> PathBuf {
            let path = dir.path().join(name);
            std::fs::write(&path, pem)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            path
        };
        let (ca_pem, issuer) = new_ca("ferry test CA");
        let (other_ca_pem, _) = new_ca("unrelated test CA");
        let local = ["127.0.0.1", "localhost"];
        let valid = (ymd(2020), ymd(2100));
        let (server_cert, server_key) = leaf(&issuer, &local, Use::Server, valid);
        let (client_cert, client_key) = leaf(&issuer, &["ferry-client"], Use::Client, valid);
        let (expired_cert, expired_key) =
            leaf(&issuer, &local, Use::Server, (ymd(2000), ymd(2001)));
        let soon = OffsetDateTime::now_utc() + time::Duration::days(SOON_DAYS);
        let (soon_cert, soon_key) = leaf(&issuer, &local, Use::Server, (ymd(2020), soon));
        let (named_cert, named_key) = leaf(&issuer, &[OTHER_NAME], Use::Server, valid);
        TlsFiles {
            ca: write("ca.pem", ca_pem),
            server_cert: write("server.pem", server_cert),
            server_key: write("server-key.pem", server_key),
            client_cert: write("client.pem", client_cert),
            client_key: write("client-key.pem", client_key),
            expired_cert: write("expired.pem", expired_cert),
            expired_key: write("expired-key.pem", expired_key),
            soon_cert: write("soon.pem", soon_cert),
            soon_key: write("soon-key.pem", soon_key),
            named_cert: write("named.pem", named_cert),
            named_key: write("named-key.pem", named_key),
            other_ca: write("other-ca.pem", other_ca_pem),
            dir,
        }
    }

    /// The dir holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

#[derive(Clone, Copy)]
enum Use {
    Server,
    Client,
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2100, 1, 1);
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("cannot make a key: {e}"));
    let cert = params
        .self_signed(&key)
        .unwrap_or_else(|e| panic!("cannot make the CA certificate: {e}"));
    (cert.pem(), Issuer::new(params, key))
}

/// Jan 1 of `year`.
fn ymd(year: i32) -> OffsetDateTime {
    date_time_ymd(year, 1, 1)
}

/// A certificate for `names`, valid from the first time to the second, and its key, as PEM.
fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    names: &[&str],
    usage: Use,
    (from, until): (OffsetDateTime, OffsetDateTime),
) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names.clone())
        .unwrap_or_else(|e| panic!("bad certificate names {names:?}: {e}"));
    params
        .distinguished_name
        .push(DnType::CommonName, &names[0]);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![match usage {
        Use::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Use::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    params.not_before = from;
    params.not_after = until;
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("cannot make a key: {e}"));
    let cert = params
        .signed_by(&key, issuer)
        .unwrap_or_else(|e| panic!("cannot sign a certificate for {names:?}: {e}"));
    (cert.pem(), key.serialize_pem())
}
