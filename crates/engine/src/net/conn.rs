//! A RESP connection to one server: connect with a deadline (and a TLS handshake for
//! `rediss://`), log in, send a command and read its reply. The replication source and the
//! target writers start here and then take the socket.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferry_resp::{Decoder, Frame, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result, Role};
use crate::net::endpoint::Endpoint;
use crate::net::socket::Socket;
use crate::net::tls::Tls;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Conn {
    pub role: Role,
    pub addr: String,
    stream: Socket,
    /// TLS settings, to put a failure the server reports after the handshake into words.
    tls: Option<Tls>,
    /// Bytes read from the socket and not yet consumed.
    pub buf: BytesMut,
    decoder: Decoder,
}

impl Conn {
    /// Connects and logs in (AUTH with the URL's user and password, if any).
    pub async fn connect(role: Role, endpoint: &Endpoint) -> Result<Conn> {
        match &endpoint.sentinel {
            Some(sentinels) => {
                // Asked at every connect: after a failover this reaches the new master.
                let (host, port) = sentinels.master_addr(role, endpoint).await?;
                Conn::connect_direct(role, &endpoint.at(&host, port)).await
            }
            None => Conn::connect_direct(role, endpoint).await,
        }
    }

    /// Connects to the server `endpoint` names itself (not through its sentinels).
    pub async fn connect_direct(role: Role, endpoint: &Endpoint) -> Result<Conn> {
        let addr = endpoint.addr();
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(Error::Connect { role, addr, source }),
            Err(_) => {
                return Err(Error::Connect {
                    role,
                    addr,
                    source: std::io::ErrorKind::TimedOut.into(),
                });
            }
        };
        stream.set_nodelay(true).ok();
        let stream = match &endpoint.tls {
            None => Socket::Tcp(stream),
            Some(tls) => Socket::Tls(Box::new(
                handshake(role, &addr, endpoint, tls, stream).await?,
            )),
        };
        let mut conn = Conn {
            role,
            addr,
            stream,
            tls: endpoint.tls.clone(),
            buf: BytesMut::with_capacity(64 * 1024),
            decoder: Decoder::new(Limits::default()),
        };
        if let Some(password) = &endpoint.password {
            let reply = match &endpoint.username {
                Some(user) => {
                    conn.first_request(&[b"AUTH", user.as_bytes(), password.as_bytes()])
                        .await?
                }
                None => conn.first_request(&[b"AUTH", password.as_bytes()]).await?,
            };
            if let Frame::Error(msg) = reply {
                return Err(Error::Auth {
                    role,
                    addr: conn.addr,
                    msg: String::from_utf8_lossy(&msg)
                        .trim_end_matches('.')
                        .to_string(),
                });
            }
        }
        // PING both checks that the login is enough and that this is a Redis at all.
        match conn.first_request(&[b"PING"]).await? {
            Frame::Error(msg) if msg.starts_with(b"NOAUTH") => Err(Error::NoAuth {
                role,
                addr: conn.addr,
            }),
            Frame::Error(msg) => Err(conn.server_error(&msg)),
            _ => Ok(conn),
        }
    }

    /// The server's certificate (DER), on a `rediss://` connection.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        self.stream.peer_certificate()
    }

    /// Sends one command and waits for its reply. An error reply is returned as a frame, not Err.
    pub async fn request<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Frame> {
        let mut out = BytesMut::new();
        ferry_resp::encode_command(&mut out, args);
        self.write_all(&out).await?;
        match tokio::time::timeout(REPLY_TIMEOUT, self.read_frame()).await {
            Ok(r) => r.map(|(frame, _)| frame),
            Err(_) => Err(Error::Closed {
                role: self.role,
                addr: self.addr.clone(),
                context: " (no reply within 60 s)".into(),
            }),
        }
    }

    /// The first request on a new connection: a plain connection dropped before any answer is
    /// most likely one made to a TLS port, so the error says so.
    async fn first_request<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Frame> {
        use std::io::ErrorKind::{BrokenPipe, ConnectionReset, UnexpectedEof};
        match self.request(args).await {
            Err(Error::Io { source, .. })
                if self.tls.is_none()
                    && matches!(source.kind(), ConnectionReset | BrokenPipe | UnexpectedEof) =>
            {
                Err(self.dropped_at_once())
            }
            Err(Error::Closed { .. }) if self.tls.is_none() => Err(self.dropped_at_once()),
            Err(Error::Protocol { .. }) => Err(self.not_redis()),
            r => r,
        }
    }

    /// The first answer was not RESP: some other service listens there (a web server, a
    /// database of another kind). Its first bytes often name it, so they are shown.
    fn not_redis(&self) -> Error {
        let first = self.buf[..]
            .split(|&b| b == b'\n')
            .next()
            .unwrap_or_default();
        let first = &first[..first.len().min(60)];
        Error::Server {
            role: self.role,
            addr: self.addr.clone(),
            msg: format!(
                "answered {} which is not the Redis protocol: is this a Redis port?",
                crate::text::escape(first.strip_suffix(b"\r").unwrap_or(first))
            ),
        }
    }

    fn dropped_at_once(&self) -> Error {
        Error::Closed {
            role: self.role,
            addr: self.addr.clone(),
            context: " before answering (if that is its TLS port, write the URL as rediss://)"
                .into(),
        }
    }

    /// Like `request`, but an error reply becomes `Error::Server`.
    pub async fn request_ok<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Frame> {
        match self.request(args).await? {
            Frame::Error(msg) => Err(self.server_error(&msg)),
            f => Ok(f),
        }
    }

    /// Writes and flushes (with TLS, written bytes may wait in the TLS layer until flushed).
    pub async fn write_all(&mut self, data: &[u8]) -> Result<()> {
        let result = match self.stream.write_all(data).await {
            Ok(()) => self.stream.flush().await,
            Err(e) => Err(e),
        };
        result.map_err(|source| self.io_error(source))
    }

    /// A failed read or write. A TLS server that refuses ferry's client certificate says so
    /// only after the handshake (TLS 1.3), on the first read: that is a TLS error too.
    fn io_error(&self, source: std::io::Error) -> Error {
        match (&self.tls, tls_error(&source)) {
            (Some(tls), Some(e)) => Error::Tls {
                role: self.role,
                addr: self.addr.clone(),
                reason: tls.explain(e),
            },
            _ => Error::Io {
                role: self.role,
                addr: self.addr.clone(),
                source,
            },
        }
    }

    /// Reads more bytes into `buf`; Err(Closed) at end of stream.
    pub async fn fill(&mut self, context: &str) -> Result<usize> {
        self.buf.reserve(64 * 1024);
        let n = self
            .stream
            .read_buf(&mut self.buf)
            .await
            .map_err(|source| self.io_error(source))?;
        if n == 0 {
            return Err(Error::Closed {
                role: self.role,
                addr: self.addr.clone(),
                context: context.to_string(),
            });
        }
        Ok(n)
    }

    /// Reads one whole frame and returns it with its raw bytes.
    pub async fn read_frame(&mut self) -> Result<(Frame, Bytes)> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(source) => {
                    return Err(Error::Protocol {
                        role: self.role,
                        addr: self.addr.clone(),
                        source,
                    });
                }
            }
            self.fill("").await?;
        }
    }

    /// Reads one `\n`-terminated line (without `\r\n`), skipping the bare newlines a master sends
    /// as keep-alives while it prepares a snapshot.
    pub async fn read_line(&mut self, context: &str) -> Result<Bytes> {
        loop {
            while self.buf.first() == Some(&b'\n') {
                let _ = self.buf.split_to(1);
            }
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line = self.buf.split_to(pos + 1).freeze();
                line.truncate(pos);
                if line.last() == Some(&b'\r') {
                    line.truncate(pos - 1);
                }
                return Ok(line);
            }
            if self.buf.len() > 64 * 1024 {
                return Err(Error::Server {
                    role: self.role,
                    addr: self.addr.clone(),
                    msg: format!("line longer than 64 KiB while waiting for {context}"),
                });
            }
            self.fill(&format!(" while waiting for {context}")).await?;
        }
    }

    pub fn server_error(&self, msg: &[u8]) -> Error {
        Error::Server {
            role: self.role,
            addr: self.addr.clone(),
            msg: String::from_utf8_lossy(msg).into_owned(),
        }
    }

    /// `INFO server` field `redis_version`, as (major, minor, patch).
    pub async fn version(&mut self) -> Result<(u32, u32, u32)> {
        let info = self.request_ok(&[&b"INFO"[..], b"server"]).await?;
        let text = info.as_bytes().cloned().unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let v = text
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("0.0.0");
        let mut parts = v.trim().split('.').map(|p| p.parse().unwrap_or(0));
        Ok((
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
        ))
    }

    pub fn into_parts(self) -> (Socket, BytesMut) {
        (self.stream, self.buf)
    }
}

/// The TLS handshake over a connected socket, within the connect deadline.
async fn handshake(
    role: Role,
    addr: &str,
    endpoint: &Endpoint,
    tls: &Tls,
    stream: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let failed = |reason: String| Error::Tls {
        role,
        addr: addr.to_string(),
        reason,
    };
    let name = tls.server_name(&endpoint.host).map_err(failed)?;
    let connector = tokio_rustls::TlsConnector::from(tls.config());
    match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, stream)).await {
        Ok(Ok(s)) => {
            let session = s.get_ref().1;
            tracing::debug!(
                %role,
                addr,
                version = ?session.protocol_version(),
                suite = ?session.negotiated_cipher_suite().map(|c| c.suite()),
                "TLS established"
            );
            Ok(s)
        }
        Ok(Err(e)) => Err(match tls_error(&e) {
            Some(rustls_error) => failed(tls.explain(rustls_error)),
            None if e.kind() == std::io::ErrorKind::UnexpectedEof => failed(
                "the server closed the connection during the handshake (is this its TLS port?)"
                    .into(),
            ),
            None => Error::Io {
                role,
                addr: addr.to_string(),
                source: e,
            },
        }),
        Err(_) => Err(failed(format!(
            "no answer within {} s: is this the server's TLS port (tls-port)? A plain port takes redis:// URLs",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// The rustls error inside an I/O error, if that is what it is.
fn tls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}
