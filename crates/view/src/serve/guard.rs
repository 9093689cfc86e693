//! Who may ask: requests must name this server in `Host` (a page on another site that
//! rebinds its DNS name to 127.0.0.1 names itself), and requests that change state must
//! not come from another site (`Origin`, `Sec-Fetch-Site`). Clients that are not
//! browsers (curl, Python) send neither `Origin` nor `Sec-Fetch-Site` and are not
//! affected.

use std::net::SocketAddr;

use hyper::{HeaderMap, Method, header};

/// The names this server answers to, and the checks on each request.
#[derive(Debug, Clone)]
pub(super) struct Guard {
    hosts: Vec<String>,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// `Host` names another server.
    ForeignHost(String),
    /// A state-changing request from another site.
    CrossSite(String),
}

impl Refusal {
    /// The HTTP status and message.
    pub fn reply(&self) -> (u16, String) {
        match self {
            Refusal::ForeignHost(host) => (
                421,
                format!(
                    "this server does not answer for host {host:?} (start it with --allow-host {host} if that name is yours)"
                ),
            ),
            Refusal::CrossSite(origin) => (
                403,
                format!("refused: a request from {origin} may not change this server's data"),
            ),
        }
    }
}

impl Guard {
    /// Loopback names, the listening address, and `allowed` extra names.
    pub fn new(local: SocketAddr, allowed: &[String]) -> Self {
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|h| h.to_string())
            .collect();
        hosts.push(local.ip().to_string());
        hosts.extend(allowed.iter().map(|h| h.to_ascii_lowercase()));
        Self { hosts }
    }

    /// Whether `authority` (`host[:port]`, `[v6][:port]`) names this server.
    fn is_ours(&self, authority: &str) -> bool {
        let authority = authority.trim().to_ascii_lowercase();
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority
                .rsplit_once(':')
                .map_or(authority.as_str(), |(h, port)| {
                    if port.bytes().all(|b| b.is_ascii_digit()) {
                        h
                    } else {
                        authority.as_str()
                    }
                }),
        };
        self.hosts.iter().any(|h| h == host)
    }

    /// Checks a request's `Host`, and for anything but reads its `Origin` and
    /// `Sec-Fetch-Site`.
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if let Some(host) = text(header::HOST.as_str())
            && !self.is_ours(host)
        {
            return Err(Refusal::ForeignHost(host.to_string()));
        }
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return Ok(());
        }
        match text(header::ORIGIN.as_str()) {
            Some(origin) => {
                let authority = origin.strip_prefix("http://").unwrap_or("");
                if authority.is_empty() || !self.is_ours(authority) {
                    return Err(Refusal::CrossSite(origin.to_string()));
                }
            }
            None if text("sec-fetch-site") == Some("cross-site") => {
                return Err(Refusal::CrossSite("another site".into()));
            }
            None => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn hosts_and_origins() {
        let guard = Guard::new("127.0.0.1:8080".parse().unwrap(), &["box.lan".into()]);
        let get = Method::GET;
        for host in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:9",
            "[::1]:8080",
            "BOX.lan",
        ] {
            assert_eq!(
                guard.check(&get, &headers(&[("host", host)])),
                Ok(()),
                "{host}"
            );
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
        ] {
            assert!(
                guard.check(&get, &headers(&[("host", host)])).is_err(),
                "{host}"
            );
        }
        let post = Method::POST;
        let ok = [
            ("host", "localhost:8080"),
            ("origin", "http://localhost:8080"),
        ];
        assert_eq!(guard.check(&post, &headers(&ok)), Ok(()));
        assert_eq!(
            guard.check(&post, &headers(&[("host", "127.0.0.1")])),
            Ok(())
        );
        for origin in ["http://evil.example", "null", "https://localhost:8080"] {
            let refused = guard.check(&post, &headers(&[("origin", origin)]));
            assert!(matches!(refused, Err(Refusal::CrossSite(_))), "{origin}");
        }
        let cross = [("sec-fetch-site", "cross-site")];
        assert!(guard.check(&post, &headers(&cross)).is_err());
        assert_eq!(guard.check(&get, &headers(&cross)), Ok(()));
    }
}
