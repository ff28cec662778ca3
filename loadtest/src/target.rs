//! Load targets: an `http://host:port` base, resolved once, refused outside loopback unless
//! the operator says otherwise.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// As given, for reports.
    pub label: String,
    pub addr: SocketAddr,
    /// Value of the Host header.
    pub host: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("{0:?} is not an http://host:port URL")]
    Malformed(String),
    #[error("{0:?} does not resolve")]
    Unresolved(String),
    #[error(
        "{0} resolves to {1}, outside the loopback range; pass --allow-remote to load it anyway"
    )]
    NotLoopback(String, IpAddr),
}

impl Target {
    /// Parses `http://host[:port]` (a trailing `/` is allowed; HTTPS is not supported).
    pub fn parse(input: &str, allow_remote: bool) -> Result<Self, TargetError> {
        let malformed = || TargetError::Malformed(input.to_owned());
        let rest = input.strip_prefix("http://").ok_or_else(malformed)?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return Err(malformed());
        }
        let has_port = if authority.starts_with('[') {
            authority.contains("]:")
        } else {
            authority.contains(':')
        };
        let with_port = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|_| TargetError::Unresolved(input.to_owned()))?
            .next()
            .ok_or_else(|| TargetError::Unresolved(input.to_owned()))?;
        if !allow_remote && !addr.ip().is_loopback() {
            return Err(TargetError::NotLoopback(input.to_owned(), addr.ip()));
        }
        Ok(Self {
            label: input.to_owned(),
            addr,
            host: authority.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_are_accepted() {
        let t = Target::parse("http://127.0.0.1:8080", false).unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.host, "127.0.0.1:8080");
        assert!(Target::parse("http://localhost:9/", false).is_ok());
        assert!(Target::parse("http://[::1]:8080", false).is_ok());
        assert!(Target::parse("http://127.9.9.9:1", false).is_ok());
    }

    #[test]
    fn remote_targets_need_the_explicit_flag() {
        let err = Target::parse("http://192.0.2.1:80", false).unwrap_err();
        assert!(matches!(err, TargetError::NotLoopback(..)));
        assert!(Target::parse("http://192.0.2.1:80", true).is_ok());
        assert!(matches!(
            Target::parse("http://10.1.2.3", false),
            Err(TargetError::NotLoopback(..))
        ));
    }

    #[test]
    fn malformed_targets_are_refused() {
        for bad in [
            "127.0.0.1:80",
            "https://127.0.0.1",
            "http://",
            "http://a b",
            "http://u@127.0.0.1/",
            "http://127.0.0.1/path",
        ] {
            assert!(
                matches!(Target::parse(bad, false), Err(TargetError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
