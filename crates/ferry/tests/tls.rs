//! TLS end to end: the real binary between redis-servers listening with `--tls-port`, with
//! certificates made at test time. The test itself talks to each server on its plain port.

mod common;

use std::time::Duration;

use common::{Ferry, wait_caught_up};
use testkit::Server;
use testkit::compare::{self, Options};
use testkit::tls::{OTHER_NAME, TlsFiles};
use testkit::workload::{self, Spec};

fn spec(seed: u64) -> Spec {
    Spec {
        seed,
        keys_per_db: 500,
        ..Spec::default()
    }
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

fn tls_addr(server: &Server) -> String {
    format!("127.0.0.1:{}", server.tls_port().unwrap())
}

/// Runs ferry to the end of a full copy and checks the target equals the source.
fn full_copy(source: &Server, target: &Server, args: &[&str]) {
    workload::populate(source, &spec(3));
    let mut ferry = Ferry::start(args);
    let code = ferry.wait(Duration::from_secs(120));
    assert!(
        code.success(),
        "ferry failed: {code}; log:\n{}",
        ferry.log()
    );
    let n = compare::compare(source, target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));
    assert!(n > 1000, "only {n} keys compared");
}

/// Runs ferry, expects it to fail with exactly one `ferry: ` line holding every `expect`.
fn fails_with(args: &[&str], expect: &[&str]) -> String {
    let mut ferry = Ferry::start(args);
    let code = ferry.wait(Duration::from_secs(60));
    let log = ferry.log();
    assert_eq!(code.code(), Some(1), "ferry should exit 1; log:\n{log}");
    assert!(!log.contains("panicked"), "ferry panicked:\n{log}");
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with("ferry: ")).collect();
    assert_eq!(lines.len(), 1, "want exactly one error line, log:\n{log}");
    for e in expect {
        assert!(
            lines[0].contains(e),
            "error line {:?} should mention {e:?}",
            lines[0]
        );
    }
    lines[0].to_string()
}

/// A source serving replicas over TLS (`tls-replication yes`) into a TLS target, both checked
/// against a CA file given in the config file: full copy under writes, then the stream.
#[test]
fn full_and_incremental_sync_over_tls() {
    let files = TlsFiles::generate();
    let source = Server::start_tls(&files, &["--repl-diskless-sync", "yes"]);
    let target = Server::start_tls(&files, &[]);
    let spec = spec(11);
    workload::populate(&source, &spec);
    let background = workload::run_in_background(&source, spec.clone());
    let config = files.dir().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nurl = \"{}\"\n[source.tls]\nca_file = \"{}\"\n\
             [target]\nurl = \"{}\"\n[target.tls]\nca_file = \"{}\"\nmin_version = \"1.2\"\n",
            source.tls_url(),
            path(&files.ca),
            target.tls_url(),
            path(&files.ca),
        ),
    )
    .unwrap();
    let mut ferry = Ferry::start_with_status(&["--config", path(&config)]);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let counts = background.stop();
    assert!(
        counts.values().sum::<u64>() > 0,
        "the workload wrote nothing"
    );
    let mut tail = workload::Workload::new(&Spec {
        seed: 12,
        ..spec.clone()
    });
    tail.run(&source, 2000);
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    // ferry's heartbeat moves the source on every second: the lag is 0 again within one.
    let st = ferry.wait_status(Duration::from_secs(30), "no lag", |s| s["lag_bytes"] == 0);
    assert_eq!(st["lag_bytes"], 0, "{st}");
    assert!(st["last_error"].is_null(), "{st}");
    // The source counts ferry among its replicas, and ferry's ACKs come back over TLS.
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(10_000)
        .query(&mut source.conn())
        .unwrap();
    assert_eq!(acked, 1, "ferry did not acknowledge the source's offset");
    let opts = Options {
        group_read_counters: false,
        ..Options::default()
    };
    compare::eventually_equal(&source, &target, &opts, Duration::from_secs(10))
        .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    let code = ferry.terminate(Duration::from_secs(30));
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
}

/// Servers that require client certificates: ferry gives its own, from flags. Without it,
/// one line says the server wants one.
#[test]
fn mutual_tls() {
    let files = TlsFiles::generate();
    let source = Server::start_tls(&files, &["--tls-auth-clients", "yes"]);
    let target = Server::start_tls(&files, &["--tls-auth-clients", "yes"]);
    let (source_url, target_url) = (source.tls_url(), target.tls_url());
    let args = [
        "--source",
        &source_url,
        "--source-tls-ca",
        path(&files.ca),
        "--source-tls-cert",
        path(&files.client_cert),
        "--source-tls-key",
        path(&files.client_key),
        "--target",
        &target_url,
        "--target-tls-ca",
        path(&files.ca),
        "--target-tls-cert",
        path(&files.client_cert),
        "--target-tls-key",
        path(&files.client_key),
        "--full-only",
    ];
    full_copy(&source, &target, &args);

    // The same without a client certificate for the target.
    let source_only = [
        "--source",
        &source_url,
        "--source-tls-ca",
        path(&files.ca),
        "--source-tls-cert",
        path(&files.client_cert),
        "--source-tls-key",
        path(&files.client_key),
        "--target",
        &target_url,
        "--target-tls-ca",
        path(&files.ca),
        "--full-only",
    ];
    let line = fails_with(
        &source_only,
        &[
            "target",
            &tls_addr(&target),
            "TLS handshake failed",
            "client certificate",
        ],
    );
    assert!(!line.contains("source"), "{line}");

    // A server that trusts another CA for its clients refuses ferry's certificate.
    let picky = Server::start_tls(
        &files,
        &[
            "--tls-auth-clients",
            "yes",
            "--tls-ca-cert-file",
            path(&files.other_ca),
        ],
    );
    let picky_url = picky.tls_url();
    fails_with(
        &[
            "--source",
            &source.url(),
            "--target",
            &picky_url,
            "--target-tls-ca",
            path(&files.ca),
            "--target-tls-cert",
            path(&files.client_cert),
            "--target-tls-key",
            path(&files.client_key),
        ],
        &[
            "target",
            &tls_addr(&picky),
            "does not accept the client certificate",
            path(&files.client_cert),
        ],
    );

    // Over TLS 1.2 the server refuses the handshake itself, less precisely.
    let target12 = Server::start_tls(
        &files,
        &["--tls-auth-clients", "yes", "--tls-protocols", "TLSv1.2"],
    );
    let target12_url = target12.tls_url();
    fails_with(
        &[
            "--source",
            &source.url(),
            "--target",
            &target12_url,
            "--target-tls-ca",
            path(&files.ca),
        ],
        &["target", &tls_addr(&target12), "client certificate"],
    );
}

/// A server that speaks only TLS 1.2 and one that speaks only TLS 1.3 both work; asking for
/// at least 1.3 from the 1.2-only one fails in one line.
#[test]
fn tls_versions() {
    let files = TlsFiles::generate();
    let source = Server::start_tls(&files, &["--tls-protocols", "TLSv1.3"]);
    let target = Server::start_tls(&files, &["--tls-protocols", "TLSv1.2"]);
    let (source_url, target_url) = (source.tls_url(), target.tls_url());
    let args = [
        "--source",
        &source_url,
        "--source-tls-ca",
        path(&files.ca),
        "--source-tls-min-version",
        "1.3",
        "--target",
        &target_url,
        "--target-tls-ca",
        path(&files.ca),
        "--full-only",
    ];
    full_copy(&source, &target, &args);
    let mut strict = args.to_vec();
    strict.extend(["--target-tls-min-version", "1.3"]);
    fails_with(
        &strict,
        &["target", &tls_addr(&target), "does not speak TLS 1.3"],
    );
}

/// A CA file that did not sign the server's certificate: one line naming the host.
#[test]
fn wrong_ca() {
    let files = TlsFiles::generate();
    let source = Server::start_tls(&files, &[]);
    let target = Server::start();
    let source_url = source.tls_url();
    let other_ca = path(&files.other_ca).to_string();
    fails_with(
        &[
            "--source",
            &source_url,
            "--source-tls-ca",
            &other_ca,
            "--target",
            &target.url(),
        ],
        &[
            "source",
            &tls_addr(&source),
            "TLS handshake failed",
            "not trusted",
            &other_ca,
            "UnknownIssuer",
        ],
    );
    // No CA file: the public CAs do not know this one either.
    fails_with(
        &["--source", &source_url, "--target", &target.url()],
        &[
            "source",
            &tls_addr(&source),
            "not trusted",
            "--source-tls-ca",
        ],
    );
}

#[test]
fn expired_server_certificate() {
    let files = TlsFiles::generate();
    let source = Server::start();
    let target = Server::start_tls(
        &files,
        &[
            "--tls-cert-file",
            path(&files.expired_cert),
            "--tls-key-file",
            path(&files.expired_key),
        ],
    );
    fails_with(
        &[
            "--source",
            &source.url(),
            "--target",
            &target.tls_url(),
            "--target-tls-ca",
            path(&files.ca),
        ],
        &[
            "target",
            &tls_addr(&target),
            "certificate has expired",
            "2001-01-01",
        ],
    );
}

/// The certificate names another host than the one in the URL: refused, unless the expected
/// name is given.
#[test]
fn server_name_override() {
    let files = TlsFiles::generate();
    let source = Server::start();
    let target = Server::start_tls(
        &files,
        &[
            "--tls-cert-file",
            path(&files.named_cert),
            "--tls-key-file",
            path(&files.named_key),
        ],
    );
    let (source_url, target_url) = (source.url(), target.tls_url());
    let mut args = vec![
        "--source",
        &source_url,
        "--target",
        &target_url,
        "--target-tls-ca",
        path(&files.ca),
        "--full-only",
    ];
    fails_with(
        &args,
        &[
            "target",
            &tls_addr(&target),
            "not valid for 127.0.0.1",
            OTHER_NAME,
            "server_name",
        ],
    );
    args.extend(["--target-tls-server-name", OTHER_NAME]);
    full_copy(&source, &target, &args);
}

/// `rediss://` at a plain port, and `redis://` at a TLS port: one line each, pointing at the port.
#[test]
fn tls_and_plain_ports_mixed_up() {
    let files = TlsFiles::generate();
    let source = Server::start_tls(&files, &[]);
    let target = Server::start();
    let plain_as_tls = format!("rediss://{}", source.addr());
    fails_with(
        &[
            "--source",
            &plain_as_tls,
            "--source-tls-ca",
            path(&files.ca),
            "--target",
            &target.url(),
        ],
        &["source", &source.addr(), "TLS handshake failed", "TLS port"],
    );
    let tls_as_plain = format!("redis://{}", tls_addr(&source));
    fails_with(
        &["--source", &tls_as_plain, "--target", &target.url()],
        &["source", &tls_addr(&source), "rediss://"],
    );
}
