//! `http_allow`: the hosts a plugin may call through the `http` import, parsed once at load.
//!
//! An entry is a host name (`api.example.org`), a wildcard over a domain's subdomains
//! (`*.example.org`), or an IP literal (`127.0.0.1`, `[::1]`), each optionally with a port
//! (`:8080`). Without a port only the scheme's own (80 or 443) is allowed, so a listed name does
//! not open every service on that machine. A name is never allowed to resolve to a private,
//! loopback or link-local address; only an IP literal on the list reaches one (see
//! `crate::egress`).

use std::fmt;
use std::net::IpAddr;

use serde::Deserialize;

/// What an entry names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this name (lower case, no trailing dot).
    Name(String),
    /// Any name ending in `.<domain>` (not the domain itself).
    Subdomains(String),
    /// Exactly this address.
    Ip(IpAddr),
}

/// One entry of an `http_allow` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    /// The host.
    pub host: HostPattern,
    /// The port; `None`: the scheme's default port only.
    pub port: Option<u16>,
}

impl AllowedHost {
    /// Parse one entry, saying what is wrong with a bad one.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("an empty entry".into());
        }
        if t.contains("://") || t.contains('/') {
            return Err(format!("`{t}`: give a host (and maybe `:port`), not a URL"));
        }
        // `[v6]` or `[v6]:port`, `v4:port`, `name:port`, or a bare host.
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let (ip, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("`{t}`: an IPv6 address must be closed with `]`"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| format!("`{t}`: expected `:port` after `]`"))?),
            };
            let ip: IpAddr = ip.parse().map_err(|_| format!("`{t}`: `{ip}` is not an IPv6 address"))?;
            return Ok(Self { host: HostPattern::Ip(ip), port: port.map(|p| parse_port(t, p)).transpose()? });
        } else if let Ok(ip) = t.parse::<IpAddr>() {
            return Ok(Self { host: HostPattern::Ip(ip), port: None });
        } else {
            match t.rsplit_once(':') {
                Some((h, p)) => (h, Some(parse_port(t, p)?)),
                None => (t, None),
            }
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Self { host: HostPattern::Ip(ip), port });
        }
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        let (pattern, bare) = match name.strip_prefix("*.") {
            Some(domain) => (HostPattern::Subdomains(domain.to_owned()), domain.to_owned()),
            None => (HostPattern::Name(name.clone()), name),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
        };
        if bare.len() > 253 || !bare.split('.').all(label_ok) {
            return Err(format!(
                "`{t}`: not a host name (letters, digits and `-` in dot-separated labels; `*.` only as a first label)"
            ));
        }
        if matches!(pattern, HostPattern::Subdomains(_)) && !bare.contains('.') {
            return Err(format!(
                "`{t}`: a wildcard must name a domain with at least two labels (`*.example.org`)"
            ));
        }
        Ok(Self { host: pattern, port })
    }

    /// Whether a URL's host (a lower-case name, or an address) and port fall under this entry;
    /// `default_port` is the scheme's.
    pub fn covers(&self, host: &UrlHost<'_>, port: u16, default_port: u16) -> bool {
        if port != self.port.unwrap_or(default_port) {
            return false;
        }
        match (&self.host, host) {
            (HostPattern::Name(n), UrlHost::Name(h)) => n == h,
            (HostPattern::Subdomains(d), UrlHost::Name(h)) => {
                h.strip_suffix(d.as_str()).is_some_and(|p| p.ends_with('.') && p.len() > 1)
            }
            (HostPattern::Ip(a), UrlHost::Ip(b)) => a == b,
            _ => false,
        }
    }
}

/// The host of a URL being checked.
#[derive(Debug, Clone, Copy)]
pub enum UrlHost<'a> {
    /// A name, lower case.
    Name(&'a str),
    /// An address literal.
    Ip(IpAddr),
}

fn parse_port(entry: &str, p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("`{entry}`: `{p}` is not a port (1 to 65535)")),
        Ok(port) => Ok(port),
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Name(n) => f.write_str(n)?,
            HostPattern::Subdomains(d) => write!(f, "*.{d}")?,
            HostPattern::Ip(IpAddr::V6(a)) => write!(f, "[{a}]")?,
            HostPattern::Ip(a) => write!(f, "{a}")?,
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for AllowedHost {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        AllowedHost::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for AllowedHost {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers(entry: &str, host: UrlHost<'_>, port: u16) -> bool {
        AllowedHost::parse(entry).unwrap().covers(&host, port, 443)
    }

    #[test]
    fn entries_parse_or_say_what_is_wrong() {
        assert_eq!(AllowedHost::parse("API.Example.org.").unwrap().to_string(), "api.example.org");
        assert_eq!(AllowedHost::parse("127.0.0.1:8080").unwrap().to_string(), "127.0.0.1:8080");
        assert_eq!(AllowedHost::parse("[::1]:80").unwrap().to_string(), "[::1]:80");
        assert_eq!(AllowedHost::parse("*.example.org").unwrap().to_string(), "*.example.org");
        assert!(AllowedHost::parse("https://api.example.org/").unwrap_err().contains("not a URL"));
        assert!(AllowedHost::parse("api.example.org:0").unwrap_err().contains("not a port"));
        assert!(AllowedHost::parse("*.org").unwrap_err().contains("two labels"));
        assert!(AllowedHost::parse("a_b.example.org").unwrap_err().contains("not a host name"));
        assert!(AllowedHost::parse("[::1").unwrap_err().contains("closed"));
    }

    #[test]
    fn an_entry_covers_its_host_and_port_only() {
        assert!(covers("api.example.org", UrlHost::Name("api.example.org"), 443));
        assert!(
            !covers("api.example.org", UrlHost::Name("api.example.org"), 8443),
            "no port given: the scheme's only"
        );
        assert!(!covers("api.example.org", UrlHost::Name("evil-api.example.org"), 443));
        assert!(covers("*.example.org", UrlHost::Name("a.b.example.org"), 443));
        assert!(!covers("*.example.org", UrlHost::Name("example.org"), 443));
        assert!(!covers("*.example.org", UrlHost::Name("badexample.org"), 443));
        assert!(covers("127.0.0.1:8080", UrlHost::Ip("127.0.0.1".parse().unwrap()), 8080));
        assert!(
            !covers("127.0.0.1:8080", UrlHost::Name("localhost"), 8080),
            "a listed address does not admit a name"
        );
    }
}
