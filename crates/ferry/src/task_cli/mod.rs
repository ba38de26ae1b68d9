//! `ferry task ...`: drives the tasks of a `ferry serve` through its API. `client` speaks HTTP
//! and turns refusals into one-line errors, `show` prints answers as tables, `sse` reads the
//! event stream of `events --follow`.

mod client;
mod show;
mod sse;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

use client::{CliError, Client, Token, TokenSource};

#[derive(Args)]
pub struct TaskArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: TaskCommand,
}

/// Which server, with which token, and how to print.
#[derive(Args)]
struct Connection {
    /// The URL of ferry serve.
    #[arg(
        long,
        global = true,
        env = "FERRY_SERVER",
        default_value = "http://127.0.0.1:8480",
        value_name = "URL"
    )]
    server: String,
    /// ferry serve's data dir: the API token is read from DIR/api-token. Without --data,
    /// --token-file or FERRY_TOKEN (the token itself), serve's [default: ./ferry-server]
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
    /// A file holding the API token.
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "data")]
    token_file: Option<PathBuf>,
    /// Print the API's JSON as it is (events: one JSON object per line) instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum TaskCommand {
    /// List the tasks, oldest first.
    List {
        /// Only tasks with this label.
        #[arg(long, value_name = "KEY=VALUE", value_parser = parse_label)]
        label: Option<(String, String)>,
    },
    /// Create a task from a TOML file: the same settings as `ferry sync --config FILE`.
    /// Its passwords go to the server, which keeps them apart and never shows them.
    Create {
        /// The task's settings.
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
        /// Precheck the task and, when nothing fails, start it.
        #[arg(long)]
        start: bool,
        /// A label for the task (repeat for several).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Show a task: its state, servers, live figures and last reports.
    Get { id: String },
    /// Run the precheck (the items of `ferry check`); the task is `ready` when nothing fails.
    /// Exits 1 when an item fails.
    Precheck { id: String },
    /// Start a task (refused while its last precheck has a failure).
    Start { id: String },
    /// Stop writing to the targets; the source's writes wait in the spool.
    Pause { id: String },
    /// Write what the spool kept, then follow the source again.
    Resume { id: String },
    /// Stop a task once its writes in flight are done; a later start continues from there.
    Stop { id: String },
    /// Delete a task that is not running, with its history and local files.
    Delete { id: String },
    /// A task's history of events, oldest first.
    Events {
        id: String,
        /// Keep printing new events as they happen, until interrupted.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only events after this sequence number.
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        after: i64,
    },
    /// Compare the task's targets with its source, key by key, and keep the report.
    /// Exits 1 when differences remain, 2 when the verification could not run.
    Verify { id: String },
}

/// `KEY=VALUE`, the key not empty.
fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("a label is KEY=VALUE, e.g. env=prod, not {text:?}")),
    }
}

/// What a command found, beyond having worked: its exit status.
enum Outcome {
    Done,
    /// A precheck that failed, a verification that found differences: exit 1.
    Failed,
}

pub fn run(args: TaskArgs) -> ExitCode {
    let verify = matches!(args.command, TaskCommand::Verify { .. });
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Spec(format!("cannot start the async runtime: {e}")))
        .and_then(|rt| rt.block_on(execute(args)));
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ferry: {e}");
            // As `ferry verify`: 1 means differences, so "could not tell" is 2.
            ExitCode::from(if verify { 2 } else { 1 })
        }
    }
}

/// The token: --token-file, else --data DIR's, else FERRY_TOKEN, else ./ferry-server's.
fn token(conn: &Connection) -> Result<Token, CliError> {
    if let Some(file) = &conn.token_file {
        return Token::from_file(file);
    }
    if let Some(dir) = &conn.data {
        return Token::from_file(&dir.join("api-token"));
    }
    if let Some(text) = std::env::var_os("FERRY_TOKEN") {
        return Token::new(text.to_string_lossy().into_owned(), TokenSource::Env);
    }
    Token::from_file(&Path::new("ferry-server").join("api-token"))
}

async fn execute(args: TaskArgs) -> Result<Outcome, CliError> {
    let conn = &args.conn;
    // The file is read before anything is asked of the server: a mistake in it is named first.
    let create_body = match &args.command {
        TaskCommand::Create { config, labels, .. } => Some(create_body(config, labels)?),
        _ => None,
    };
    let base = client::server_url(&conn.server)?;
    let client = Client::new(base, token(conn)?)?;
    let out = Out { json: conn.json };
    let now = now_ms();
    match args.command {
        TaskCommand::List { label } => {
            let filter = label.map(|(k, v)| format!("{k}={v}"));
            let query: Vec<(&str, &str)> = filter.iter().map(|f| ("label", f.as_str())).collect();
            let list = client
                .call(Method::GET, &["tasks"], &query, None)
                .await?
                .unwrap_or_default();
            out.json_or(&list, || {
                show::tasks(list.as_array().map(Vec::as_slice).unwrap_or(&[]), now)
            })?;
        }
        TaskCommand::Create { start, .. } => {
            let query: &[(&str, &str)] = if start { &[("start", "true")] } else { &[] };
            let created = client
                .call(Method::POST, &["tasks"], query, create_body.as_ref())
                .await?
                .unwrap_or_default();
            out.json_or(&created, || {
                let mut text = String::new();
                if created["precheck"].is_array() {
                    text.push_str(&show::findings(&created["precheck"]));
                    text.push('\n');
                }
                text + &show::tasks(std::slice::from_ref(&created["task"]), now)
            })?;
        }
        TaskCommand::Get { id } => {
            let task = task_call(&client, Method::GET, &id, None).await?;
            out.json_or(&task, || show::task(&task, now))?;
        }
        TaskCommand::Precheck { id } => {
            let checked = task_call(&client, Method::POST, &id, Some("precheck")).await?;
            out.json_or(&checked, || {
                let state = &checked["task"]["state"];
                format!(
                    "{}\ntask {id} is {}\n",
                    show::findings(&checked["report"]),
                    state.as_str().unwrap_or("-")
                )
            })?;
            if checked["failed"].as_bool() != Some(false) {
                return Ok(Outcome::Failed);
            }
        }
        TaskCommand::Start { id } => state_change(&client, &out, &id, "start", now).await?,
        TaskCommand::Resume { id } => state_change(&client, &out, &id, "resume", now).await?,
        TaskCommand::Stop { id } => state_change(&client, &out, &id, "stop", now).await?,
        TaskCommand::Pause { id } => {
            let paused = task_call(&client, Method::POST, &id, Some("pause")).await?;
            out.json_or(&paused, || {
                format!(
                    "{}{}\n",
                    show::tasks(std::slice::from_ref(&paused["task"]), now),
                    show::pause(&paused["pause"])
                )
            })?;
        }
        TaskCommand::Delete { id } => {
            client
                .call(Method::DELETE, &["tasks", &id], &[], None)
                .await?;
            if !out.json {
                out.print(&format!("task {id} deleted\n"))?;
            }
        }
        TaskCommand::Events { id, follow, after } => {
            events(&client, &out, &id, follow, after).await?;
        }
        TaskCommand::Verify { id } => {
            let verified = task_call(&client, Method::POST, &id, Some("verify")).await?;
            out.json_or(&verified, || {
                let summary = match verified["failed"].as_bool() {
                    Some(false) => "the targets equal the source",
                    _ => "differences remain",
                };
                format!("{}{summary}\n", show::verification(&verified["report"]))
            })?;
            if verified["failed"].as_bool() != Some(false) {
                return Ok(Outcome::Failed);
            }
        }
    }
    Ok(Outcome::Done)
}

/// `GET /tasks/ID` or `POST /tasks/ID/ACTION`, whose answer is a JSON object.
async fn task_call(
    client: &Client,
    method: Method,
    id: &str,
    action: Option<&str>,
) -> Result<Value, CliError> {
    let mut path = vec!["tasks", id];
    path.extend(action);
    Ok(client
        .call(method, &path, &[], None)
        .await?
        .unwrap_or_default())
}

/// Start, resume, stop: the task as it is after, one row.
async fn state_change(
    client: &Client,
    out: &Out,
    id: &str,
    action: &str,
    now: u64,
) -> Result<(), CliError> {
    let task = task_call(client, Method::POST, id, Some(action)).await?;
    out.json_or(&task, || show::tasks(std::slice::from_ref(&task), now))
}

/// Every event after `after`, through the pages; with `follow`, then each new one as it
/// happens, from the server's event stream.
async fn events(
    client: &Client,
    out: &Out,
    id: &str,
    follow: bool,
    after: i64,
) -> Result<(), CliError> {
    let line = |e: &Value| match out.json {
        true => format!("{e}\n"),
        false => format!("{}\n", show::event(e)),
    };
    if follow {
        let after = after.to_string();
        let mut resp = client
            .stream(&["tasks", id, "events"], &[("after", &after)])
            .await?;
        let mut framing = sse::Events::default();
        while let Some(chunk) = client.next_chunk(&mut resp).await? {
            for data in framing.push(&chunk) {
                let event: Value = serde_json::from_str(&data).unwrap_or(Value::String(data));
                if !out.print(&line(&event))? {
                    return Ok(());
                }
            }
        }
        return Err(CliError::Broken {
            url: client_url(&resp),
            reason: "the server ended the event stream (did it stop?)".into(),
        });
    }
    let mut after = after;
    loop {
        let (after_s, limit) = (after.to_string(), "1000");
        let page = client
            .call(
                Method::GET,
                &["tasks", id, "events"],
                &[("after", &after_s), ("limit", limit)],
                None,
            )
            .await?
            .unwrap_or_default();
        let text: String = page["events"]
            .as_array()
            .into_iter()
            .flatten()
            .map(&line)
            .collect();
        if !out.print(&text)? {
            return Ok(());
        }
        match page["next_after"].as_i64() {
            Some(next) => after = next,
            None => return Ok(()),
        }
    }
}

fn client_url(resp: &reqwest::Response) -> String {
    let mut url = resp.url().clone();
    url.set_query(None);
    url.to_string()
}

/// Stdout, as JSON or as text.
struct Out {
    json: bool,
}

impl Out {
    fn json_or(&self, json: &Value, text: impl FnOnce() -> String) -> Result<(), CliError> {
        let shown = match self.json {
            true => format!(
                "{}\n",
                serde_json::to_string_pretty(json).unwrap_or_default()
            ),
            false => text(),
        };
        self.print(&shown).map(drop)
    }

    /// Writes and flushes; `false` when the reader has gone (a closed pipe), which is not an
    /// error: `ferry task events ID | head` ends quietly.
    fn print(&self, text: &str) -> Result<bool, CliError> {
        let mut stdout = std::io::stdout().lock();
        match stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
        {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(CliError::Output(e)),
        }
    }
}

/// The body of `POST /tasks`: the file's spec as JSON with its passwords (which a spec leaves
/// out when serialized) put back into the URLs, and the labels.
fn create_body(path: &Path, labels: &[(String, String)]) -> Result<Value, CliError> {
    use ferry_engine::spec::{ServerSection, TaskSpec};
    let mut spec = TaskSpec::load(path).map_err(|e| CliError::Spec(e.to_string()))?;
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::Spec(format!("cannot tell the current directory: {e}")))?;
    files_from(&mut spec, &cwd);
    let mut body = serde_json::to_value(&spec)
        .map_err(|e| CliError::Spec(format!("cannot encode {}: {e}", path.display())))?;
    let put_url = |slot: Option<&mut Value>, section: &ServerSection| {
        if let (Some(Value::Object(slot)), Some(url)) = (slot, &section.url) {
            slot.insert("url".into(), Value::String(url.expose()));
        }
    };
    put_url(body.get_mut("source"), &spec.source);
    put_url(body.get_mut("target"), &spec.target);
    for (i, section) in spec.more_targets.iter().enumerate() {
        put_url(
            body.get_mut("more_targets").and_then(|m| m.get_mut(i)),
            section,
        );
    }
    if !labels.is_empty() {
        body["labels"] = labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    Ok(body)
}

/// The files a spec names for reading (TLS files, the transform script, an RDB file source)
/// made absolute against `cwd`: `ferry sync --config` reads them from where it runs, and so
/// does the server from where *it* runs, which is not here. Where the server writes its
/// spool (`[sync] data_dir`) is left to it.
fn files_from(spec: &mut ferry_engine::spec::TaskSpec, cwd: &Path) {
    use ferry_engine::spec::{ServerSection, ServerUrl};
    let absolute = |p: &mut Option<PathBuf>| {
        if let Some(path) = p
            && path.is_relative()
        {
            *path = cwd.join(&*path);
        }
    };
    let section = |s: &mut ServerSection| {
        if let Some(tls) = &mut s.tls {
            absolute(&mut tls.ca_file);
            absolute(&mut tls.cert_file);
            absolute(&mut tls.key_file);
        }
    };
    section(&mut spec.source);
    section(&mut spec.target);
    spec.more_targets.iter_mut().for_each(section);
    absolute(&mut spec.transform.script);
    // A source without a scheme is an RDB file; it has no password to keep.
    if let Some(url) = &spec.source.url {
        let text = url.expose();
        if !text.contains("://") && Path::new(&text).is_relative() {
            spec.source.url = Some(ServerUrl::new(&cwd.join(text).to_string_lossy()));
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_carries_the_passwords_and_labels_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("task.toml");
        std::fs::write(
            &file,
            "[source]\nurl = \"redis://:pw1@127.0.0.1:7000\"\n[target]\nurl = \"redis://u:pw2@127.0.0.1:7001\"\n[[more_targets]]\nurl = \"redis://127.0.0.1:7002\"\n[limit]\nfull_keys_per_sec = 10.0\n",
        )
        .unwrap();
        let body = create_body(&file, &[("env".into(), "prod".into())]).unwrap();
        assert_eq!(body["source"]["url"], "redis://:pw1@127.0.0.1:7000");
        assert_eq!(body["target"]["url"], "redis://u:pw2@127.0.0.1:7001");
        assert_eq!(body["more_targets"][0]["url"], "redis://127.0.0.1:7002");
        assert_eq!(body["limit"]["full_keys_per_sec"], 10.0);
        assert_eq!(body["labels"]["env"], "prod");
    }

    #[test]
    fn files_to_read_are_sent_absolute() {
        let spec = |text: &str| {
            let mut spec = ferry_engine::spec::TaskSpec::from_toml(text).unwrap();
            files_from(&mut spec, Path::new("/work/here"));
            serde_json::to_value(&spec).unwrap()
        };
        let s = spec(
            "[source]\nurl = \"dump.rdb\"\n[target]\nurl = \"rediss://127.0.0.1:7001\"\n[target.tls]\nca_file = \"ca.pem\"\ncert_file = \"/etc/c.pem\"\n[[more_targets]]\nurl = \"rediss://127.0.0.1:7002\"\n[more_targets.tls]\nkey_file = \"k.pem\"\n[transform]\nscript = \"t.lua\"\n[sync]\ndata_dir = \"spool\"\n",
        );
        assert_eq!(s["source"]["url"], "/work/here/dump.rdb");
        assert_eq!(s["target"]["tls"]["ca_file"], "/work/here/ca.pem");
        assert_eq!(s["target"]["tls"]["cert_file"], "/etc/c.pem");
        assert_eq!(s["more_targets"][0]["tls"]["key_file"], "/work/here/k.pem");
        assert_eq!(s["transform"]["script"], "/work/here/t.lua");
        assert_eq!(s["sync"]["data_dir"], "spool");
        let s = spec("[source]\nurl = \"redis://:pw@127.0.0.1:7000\"\n");
        assert_eq!(s["source"]["url"], "redis://127.0.0.1:7000");
    }

    #[test]
    fn a_bad_file_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("task.toml");
        std::fs::write(
            &file,
            "[source]\nurl = \"redis://127.0.0.1:7000\"\nnope = 1\n",
        )
        .unwrap();
        let e = create_body(&file, &[]).err().unwrap().to_string();
        assert!(e.contains("task.toml at line") && e.contains("nope"), "{e}");
        let e = create_body(&dir.path().join("missing.toml"), &[])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("missing.toml"), "{e}");
    }

    #[test]
    fn labels_are_key_equals_value() {
        assert_eq!(parse_label("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_label("a="), Ok(("a".into(), "".into())));
        assert!(parse_label("=b").is_err());
        assert!(parse_label("ab").is_err());
    }
}
