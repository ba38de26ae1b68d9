//! Secrets in a spec: kept apart from what is shown, so a spec can be printed, logged, stored or
//! returned by an API without them. Only [`Secret::expose`] and [`ServerUrl::expose`] give
//! them back, and only the code that connects (or a store that keeps them apart) calls those.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A password. Shown as `<hidden>` by `Debug`; it has no `Display` and is never serialized
/// unless a caller asks with [`SpecSecrets`](super::SpecSecrets).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The secret in clear, for a login.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

/// A server's address as written (`redis://user:password@host:port`, `rediss://`,
/// `redis+sentinel://...`, or for a source the path of an RDB file), with its password held
/// apart as a [`Secret`]. `Debug`, `Display` and `Serialize` give the URL without the password;
/// deserializing takes the whole URL, password included.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ServerUrl {
    /// The URL as written when it has no password; else up to the user name (`redis://user`).
    head: String,
    /// After the login's `@` (`host:port...`); `None`: the URL has no login part.
    tail: Option<String>,
    password: Option<Secret>,
}

impl ServerUrl {
    pub fn new(text: &str) -> ServerUrl {
        if let Some((scheme, rest)) = text.split_once("://") {
            // The login ends at the last '@' before the path (a sentinel URL's master name
            // follows the first '/').
            let authority_end = rest.find('/').unwrap_or(rest.len());
            if let Some(login_end) = rest[..authority_end].rfind('@') {
                let login = &rest[..login_end];
                let (user, password) = match login.split_once(':') {
                    Some((user, password)) => (user, Some(Secret::new(password))),
                    None => (login, None),
                };
                return ServerUrl {
                    head: format!("{scheme}://{user}"),
                    tail: Some(rest[login_end + 1..].to_string()),
                    password,
                };
            }
        }
        ServerUrl {
            head: text.to_string(),
            tail: None,
            password: None,
        }
    }

    /// The URL as written, password included: for parsing into an endpoint, never for showing.
    pub fn expose(&self) -> String {
        match (&self.tail, &self.password) {
            (Some(tail), Some(p)) => format!("{}:{}@{tail}", self.head, p.expose()),
            (Some(tail), None) => format!("{}@{tail}", self.head),
            (None, _) => self.head.clone(),
        }
    }

    /// The URL without its password (and without an empty login: `redis://:pw@h` shows as
    /// `redis://h`).
    pub fn shown(&self) -> String {
        match &self.tail {
            Some(tail) if self.head.ends_with("://") => format!("{}{tail}", self.head),
            Some(tail) => format!("{}@{tail}", self.head),
            None => self.head.clone(),
        }
    }

    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// Gives the URL this password (a store that kept it apart puts it back); `None` leaves it
    /// without one. A path (no `scheme://`) cannot take one: `false` then.
    pub fn set_password(&mut self, password: Option<Secret>) -> bool {
        if password.is_some() && self.tail.is_none() {
            let Some((scheme, rest)) = self.head.split_once("://") else {
                return false;
            };
            self.tail = Some(rest.to_string());
            self.head = format!("{scheme}://");
        }
        self.password = password;
        true
    }
}

impl From<&str> for ServerUrl {
    fn from(text: &str) -> ServerUrl {
        ServerUrl::new(text)
    }
}

impl From<String> for ServerUrl {
    fn from(text: String) -> ServerUrl {
        ServerUrl::new(&text)
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown())
    }
}

impl fmt::Debug for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.password {
            Some(_) => write!(f, "{:?} (password hidden)", self.shown()),
            None => write!(f, "{:?}", self.shown()),
        }
    }
}

impl Serialize for ServerUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.shown())
    }
}

impl<'de> Deserialize<'de> for ServerUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ServerUrl, D::Error> {
        let text = String::deserialize(d)?;
        Ok(ServerUrl::new(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_kept_apart_and_given_back_whole() {
        for (text, shown, password) in [
            ("redis://u:p%40ss@h:1", "redis://u@h:1", Some("p%40ss")),
            (
                "redis://:pw@127.0.0.1:6379",
                "redis://127.0.0.1:6379",
                Some("pw"),
            ),
            ("rediss://h:6380", "rediss://h:6380", None),
            (
                "redis+sentinel://:s3cret@h1:1,h2:2/mymaster",
                "redis+sentinel://h1:1,h2:2/mymaster",
                Some("s3cret"),
            ),
            ("dump.rdb", "dump.rdb", None),
            ("redis://a:b:c@h:1", "redis://a@h:1", Some("b:c")),
        ] {
            let url = ServerUrl::new(text);
            assert_eq!(url.shown(), shown, "{text}");
            assert_eq!(url.password().map(Secret::expose), password, "{text}");
            assert_eq!(url.expose(), text);
            assert_eq!(url.to_string(), shown);
            let json = serde_json::to_string(&url).unwrap();
            assert!(password.is_none_or(|p| !json.contains(p)), "{json}");
            assert!(!format!("{url:?}").contains("s3cret"));
        }
    }

    #[test]
    fn a_password_can_be_put_back() {
        let mut url = ServerUrl::new("redis://u:old@h:1");
        assert!(url.set_password(Some(Secret::new("new"))));
        assert_eq!(url.expose(), "redis://u:new@h:1");
        assert!(url.set_password(None));
        assert_eq!(url.expose(), "redis://u@h:1");
        let mut bare = ServerUrl::new("redis://h:1");
        assert!(bare.set_password(Some(Secret::new("x"))));
        assert_eq!(bare.expose(), "redis://:x@h:1");
        assert_eq!(bare.to_string(), "redis://h:1");
        assert!(!ServerUrl::new("dump.rdb").set_password(Some(Secret::new("x"))));
    }
}
