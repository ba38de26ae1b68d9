//! The HTTP side of `ferry task`: a client of `ferry serve`'s API that sends the token, and the
//! errors a user can act on: no server at the URL, a token the server refuses, the server's own
//! one-line refusal.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::ACCEPT;
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

/// Where the API token was read from: named when the server refuses it.
#[derive(Debug, Clone)]
pub enum TokenSource {
    File(PathBuf),
    Env,
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::File(path) => write!(f, "{}", path.display()),
            TokenSource::Env => f.write_str("the FERRY_TOKEN environment variable"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(
        "the server URL {given:?} (--server or FERRY_SERVER) is not an http:// or https:// URL, e.g. http://127.0.0.1:8480"
    )]
    BadServer { given: String },
    #[error(
        "cannot read the API token from {}: {source}; pass --data DIR (ferry serve's data dir, which holds api-token), --token-file FILE, or set FERRY_TOKEN",
        path.display()
    )]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the API token in {0} is empty; it is in ferry serve's DATA_DIR/api-token (--data DIR, --token-file FILE or FERRY_TOKEN)"
    )]
    EmptyToken(TokenSource),
    #[error(
        "cannot reach ferry serve at {url}: {reason}; start it (ferry serve --listen HOST:PORT) or point --server (or FERRY_SERVER) at it"
    )]
    Unreachable { url: String, reason: String },
    #[error(
        "ferry serve at {url} refused the API token read from {from}: use the token in the server's DATA_DIR/api-token (--data DIR, --token-file FILE or FERRY_TOKEN)"
    )]
    Unauthorized { url: String, from: TokenSource },
    /// The server refused the request: its own one-line message.
    #[error("{message}")]
    Refused {
        status: StatusCode,
        code: String,
        message: String,
    },
    #[error(
        "{url} answered {status} without a ferry API answer ({body}): is --server the address of ferry serve?"
    )]
    Unexpected {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("{url} gave no HTTP answer ({reason}): is --server the address of ferry serve?")]
    NoAnswer { url: String, reason: String },
    #[error("the connection to ferry serve at {url} broke: {reason}")]
    Broken { url: String, reason: String },
    /// The task file could not be read or parsed.
    #[error("{0}")]
    Spec(String),
    #[error("cannot write to stdout: {0}")]
    Output(std::io::Error),
}

/// A client of one `ferry serve`, with its token.
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: String,
    from: TokenSource,
}

/// The API token and where it came from.
pub struct Token {
    pub value: String,
    pub from: TokenSource,
}

impl Token {
    pub fn from_file(path: &Path) -> Result<Token, CliError> {
        let text = std::fs::read_to_string(path).map_err(|source| CliError::TokenFile {
            path: path.to_path_buf(),
            source,
        })?;
        Token::new(text, TokenSource::File(path.to_path_buf()))
    }

    pub fn new(text: String, from: TokenSource) -> Result<Token, CliError> {
        let value = text.trim().to_string();
        if value.is_empty() {
            return Err(CliError::EmptyToken(from));
        }
        Ok(Token { value, from })
    }
}

/// The server's URL, checked: http or https, with a host.
pub fn server_url(server: &str) -> Result<Url, CliError> {
    let bad = || CliError::BadServer {
        given: server.to_string(),
    };
    let base = Url::parse(server).map_err(|_| bad())?;
    if !matches!(base.scheme(), "http" | "https")
        || base.host_str().is_none()
        || base.cannot_be_a_base()
    {
        return Err(bad());
    }
    Ok(base)
}

impl Client {
    pub fn new(base: Url, token: Token) -> Result<Client, CliError> {
        let server = base.to_string();
        let http = reqwest::Client::builder()
            // Only the connection has a deadline: a stop, a precheck or a verification is
            // answered when it is done, and an event stream lasts as long as it is followed.
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| CliError::Unreachable {
                url: server,
                reason: innermost(&e),
            })?;
        Ok(Client {
            http,
            base,
            token: token.value,
            from: token.from,
        })
    }

    /// The server's address as the user gave it, for messages.
    fn shown(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_string()
    }

    /// `/api/v1/` and these path segments (each percent-encoded) under the server's URL.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        url
    }

    /// One call; the answer's JSON (`None` for an empty answer, as a delete's).
    pub async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Option<Value>, CliError> {
        let mut req = self
            .http
            .request(method, self.url(segments))
            .query(query)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = self.send(req).await?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.broken(&e))?;
        if bytes.is_empty() && status.is_success() {
            return Ok(None);
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(json) if status.is_success() => Ok(Some(json)),
            _ => Err(self.refusal(status, &bytes)),
        }
    }

    /// A Server-Sent Events stream, once the server has accepted it.
    pub async fn stream(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<reqwest::Response, CliError> {
        let req = self
            .http
            .get(self.url(segments))
            .query(query)
            .header(ACCEPT, "text/event-stream")
            .bearer_auth(&self.token);
        let resp = self.send(req).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.broken(&e))?;
        Err(self.refusal(status, &bytes))
    }

    /// The next piece of a stream; `None` when the server ended it.
    pub async fn next_chunk(
        &self,
        resp: &mut reqwest::Response,
    ) -> Result<Option<bytes::Bytes>, CliError> {
        resp.chunk().await.map_err(|e| self.broken(&e))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, CliError> {
        req.send().await.map_err(|e| {
            if e.is_connect() {
                CliError::Unreachable {
                    url: self.shown(),
                    reason: innermost(&e),
                }
            } else {
                CliError::NoAnswer {
                    url: self.shown(),
                    reason: innermost(&e),
                }
            }
        })
    }

    fn broken(&self, e: &reqwest::Error) -> CliError {
        CliError::Broken {
            url: self.shown(),
            reason: innermost(e),
        }
    }

    /// What a non-success answer means: a wrong token, the API's error body, or something
    /// that is not ferry serve at all.
    fn refusal(&self, status: StatusCode, bytes: &[u8]) -> CliError {
        if status == StatusCode::UNAUTHORIZED {
            return CliError::Unauthorized {
                url: self.shown(),
                from: self.from.clone(),
            };
        }
        let body: Option<Value> = serde_json::from_slice(bytes).ok();
        let field = |name: &str| {
            body.as_ref()
                .and_then(|b| b[name].as_str())
                .map(str::to_string)
        };
        match (field("error"), field("message")) {
            (Some(code), Some(message)) => CliError::Refused {
                status,
                code,
                message: one_line(&message),
            },
            _ => CliError::Unexpected {
                url: self.shown(),
                status,
                body: shorten(&one_line(&String::from_utf8_lossy(bytes)), 200),
            },
        }
    }
}

/// The most precise reason in an error's chain ("Connection refused (os error 111)" rather than
/// "error sending request").
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &dyn std::error::Error = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None if text.is_empty() => "an empty body".into(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(server: &str) -> Result<Client, CliError> {
        let token = Token::new("t".into(), TokenSource::Env)?;
        Client::new(server_url(server)?, token)
    }

    #[test]
    fn paths_go_under_the_servers_own_path_and_ids_are_encoded() {
        let c = client("http://127.0.0.1:8480").unwrap();
        assert_eq!(
            c.url(&["tasks", "a/b c", "start"]).as_str(),
            "http://127.0.0.1:8480/api/v1/tasks/a%2Fb%20c/start"
        );
        let c = client("https://127.0.0.1:9/ferry/").unwrap();
        assert_eq!(
            c.url(&["tasks"]).as_str(),
            "https://127.0.0.1:9/ferry/api/v1/tasks"
        );
    }

    #[test]
    fn a_server_that_is_not_an_http_url_is_refused_by_name() {
        for bad in ["127.0.0.1:8480", "ftp://127.0.0.1", "", "http://"] {
            let e = client(bad).err().expect(bad).to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
            assert!(e.contains("http://127.0.0.1:8480"), "{e}");
        }
    }

    #[test]
    fn an_empty_token_is_an_error_naming_where_it_came_from() {
        let e = Token::new(" \n".into(), TokenSource::File("/x/api-token".into()))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("/x/api-token"), "{e}");
    }

    #[test]
    fn long_bodies_are_cut_on_a_character_boundary() {
        assert_eq!(shorten("ééé", 2), "éé...");
        assert_eq!(shorten("", 2), "an empty body");
    }
}
