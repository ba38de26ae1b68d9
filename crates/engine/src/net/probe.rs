//! Whether a server can be reached and logged in to, and what it is: the check behind a saved
//! connection's "test" button, without a task around it.

use serde::Serialize;

use crate::error::{Result, Role};
use crate::net::conn::Conn;
use crate::net::endpoint::Endpoint;
use crate::net::tls::TlsSection;
use crate::net::topology::{self, Topology};
use crate::spec::ServerUrl;

/// What a server said of itself once logged in to.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Probe {
    /// The address connected to (for a Sentinel URL, the master the Sentinels named).
    pub addr: String,
    /// The user logged in as (`default` when the URL names none).
    pub user: String,
    /// `major.minor.patch` as INFO gives it.
    pub version: String,
    /// For a cluster, how many masters serve its slots (each was reached and logged in to).
    pub cluster_masters: Option<usize>,
    pub tls: bool,
}

/// Connects as `role` would (same URL, TLS files and login), asks the version and, for a
/// cluster, reaches every master. The error says what failed: the address, the TLS handshake
/// or the login.
pub async fn probe(role: Role, url: &ServerUrl, tls: Option<&TlsSection>) -> Result<Probe> {
    let name = match role {
        Role::Source => "source",
        Role::Target => "target",
    };
    let endpoint =
        Endpoint::parse_with_tls(name, &url.expose(), tls.unwrap_or(&TlsSection::default()))?;
    let mut conn = Conn::connect(role, &endpoint).await?;
    let (a, b, c) = conn.version().await?;
    let cluster_masters = match topology::is_cluster(&mut conn).await? {
        false => None,
        true => {
            let topology = Topology::discover(&mut conn, &endpoint).await?;
            for shard in &topology.shards {
                Conn::connect_direct(role, &shard.master).await?;
            }
            Some(topology.shards.len())
        }
    };
    Ok(Probe {
        addr: conn.addr.clone(),
        user: endpoint
            .username
            .clone()
            .unwrap_or_else(|| "default".into()),
        version: format!("{a}.{b}.{c}"),
        cluster_masters,
        tls: endpoint.tls.is_some(),
    })
}
