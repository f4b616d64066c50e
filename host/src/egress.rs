//! Outbound HTTP for plugins (the `http` import): who may be called, and one call made safely.
//!
//! A plugin runs the code of whoever deployed it, on the provider's network. So a call must not
//! reach what the allow-list does not name, and above all not the provider's own services
//! (Redis, RabbitMQ, the admin API on loopback, the cloud's metadata service on 169.254.169.254)
//! by the usual tricks: a listed name whose DNS answer is a private address (or changes to one
//! between check and connect), a redirect to one, an address spelled oddly (`2130706433`,
//! `[::ffff:127.0.0.1]`). The answers here:
//! - The URL's host and port must be on the list ([`AllowedHost`]); the URL parser has already
//!   normalised odd spellings of addresses into addresses.
//! - Names are resolved by our own resolver, inside the HTTP client, which drops every address
//!   that is not public ([`non_public`]) and fails if none is left; the client connects to what
//!   the resolver returned, so the address checked is the address used (no second lookup to
//!   rebind). An address literal reaches a non-public address only if the list names it.
//! - Redirects are never followed, proxies from the environment are never used.
//! - The whole exchange, body included, has one timeout (a slow-loris server that trickles bytes
//!   is cut off there), and the body is read in chunks up to a size cap, never buffered beyond.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::config::{AllowedHost, TenantLimits, UrlHost};
use crate::tenants::Rates;

/// What the operator allows one plugin: where it may call, how much, how long.
#[derive(Debug, Clone)]
pub struct HttpGrant {
    /// The hosts it may call (empty: none).
    pub allow: Vec<AllowedHost>,
    /// Where the list is configured, for error messages (`tenants.acme.http_allow`).
    pub allow_key: String,
    /// Calls one message may make.
    pub per_message: u32,
    /// The longest one call may take.
    pub timeout: Duration,
    /// The largest response body.
    pub max_response_bytes: usize,
    /// The tenant's buckets (calls per second); `None`: the operator's plugin.
    pub rates: Option<Arc<Rates>>,
}

impl HttpGrant {
    /// A grant from a tenant's (or the default) limits.
    pub fn new(
        allow: Vec<AllowedHost>,
        allow_key: String,
        limits: &TenantLimits,
        rates: Option<Arc<Rates>>,
    ) -> Self {
        Self {
            allow,
            allow_key,
            per_message: limits.http_calls_per_message,
            timeout: Duration::from_millis(limits.http_timeout_ms),
            max_response_bytes: limits.http_max_response_bytes as usize,
            rates,
        }
    }

    /// How much longer a handler may take for the calls it may make.
    pub fn wall_clock_allowance(&self) -> Duration {
        if self.allow.is_empty() { Duration::ZERO } else { self.timeout * self.per_message }
    }
}

/// One request, as the plugin gave it.
#[derive(Debug, Clone)]
pub struct Request {
    /// An HTTP method.
    pub method: String,
    /// An absolute `http` or `https` URL.
    pub url: String,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
    /// A shorter timeout than the grant's.
    pub timeout: Option<Duration>,
}

/// A whole response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers, in order (values not UTF-8 are decoded lossily).
    pub headers: Vec<(String, String)>,
    /// The body, at most the grant's cap.
    pub body: Vec<u8>,
}

/// Why a call gave no response; one variant per `http-error` case of the contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// Not on the allow-list, or resolving to an address that is not public.
    #[error("{0}")]
    NotAllowed(String),
    /// A malformed request.
    #[error("{0}")]
    Invalid(String),
    /// Over the calls per message or per second.
    #[error("{0}")]
    Limit(String),
    /// No whole response in time.
    #[error("{0}")]
    Timeout(String),
    /// A body over the cap.
    #[error("{0}")]
    TooLarge(String),
    /// Connection, TLS or protocol failure.
    #[error("{0}")]
    Failed(String),
}

impl EgressError {
    /// A short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            EgressError::NotAllowed(_) => "not_allowed",
            EgressError::Invalid(_) => "invalid",
            EgressError::Limit(_) => "limit",
            EgressError::Timeout(_) => "timeout",
            EgressError::TooLarge(_) => "too_large",
            EgressError::Failed(_) => "failed",
        }
    }
}

/// Why an address is not public, or `None` if it is. IPv4 inside IPv6 (mapped, compatible,
/// NAT64, 6to4) is judged as the IPv4 address it carries.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (127, ..) => "loopback",
        (10, ..) | (172, 16..=31, _) | (192, 168, _) => "private",
        (169, 254, _) => "link-local (where cloud metadata services answer)",
        (100, 64..=127, _) => "carrier-grade NAT",
        (0, ..) => "\"this network\"",
        (192, 0, 0) => "IETF protocol assignments",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, ..) => "multicast",
        (240..=255, ..) => "reserved or broadcast",
        _ => return None,
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    let s = ip.segments();
    if ip.is_loopback() {
        return Some("loopback");
    }
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    match s[0] {
        0 if s[1..6] == [0; 5] => {
            return non_public_v4(Ipv4Addr::new(
                (s[6] >> 8) as u8,
                s[6] as u8,
                (s[7] >> 8) as u8,
                s[7] as u8,
            ))
            .or(Some("IPv4-compatible"));
        }
        0x64 if s[1] == 0xff9b => {
            return non_public_v4(Ipv4Addr::new(
                (s[6] >> 8) as u8,
                s[6] as u8,
                (s[7] >> 8) as u8,
                s[7] as u8,
            ))
            .or(Some("NAT64"));
        }
        0x2002 => {
            return non_public_v4(Ipv4Addr::new(
                (s[1] >> 8) as u8,
                s[1] as u8,
                (s[2] >> 8) as u8,
                s[2] as u8,
            ));
        }
        x if x & 0xfe00 == 0xfc00 => return Some("unique local (private)"),
        x if x & 0xffc0 == 0xfe80 => return Some("link-local"),
        x if x & 0xffc0 == 0xfec0 => return Some("site-local"),
        x if x & 0xff00 == 0xff00 => return Some("multicast"),
        0x2001 if s[1] == 0x0db8 => return Some("documentation"),
        0x2001 if s[1] < 0x0200 => return Some("IETF special purpose"),
        _ => {}
    }
    None
}

/// The marker our resolver's refusal carries through the HTTP client's error chain.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The system resolver, keeping public addresses only.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (public, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
                found.into_iter().partition(|a| non_public(a.ip()).is_none());
            if public.is_empty() {
                let why: Vec<String> = refused
                    .iter()
                    .map(|a| format!("{} ({})", a.ip(), non_public(a.ip()).unwrap_or("?")))
                    .collect();
                let msg = if why.is_empty() {
                    format!("`{host}` resolves to no address")
                } else {
                    format!(
                        "`{host}` resolves only to addresses a plugin may not reach: {}; list the address itself to allow it",
                        why.join(", ")
                    )
                };
                return Err(Box::new(Refused(msg)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The one client every plugin call goes through: our resolver, no redirects, no proxy.
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .dns_resolver(PublicOnly)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("vumi/", env!("CARGO_PKG_VERSION"), " (plugin)"))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            // Only a TLS back end that cannot start fails here: a broken build, not an input.
            .unwrap_or_else(|e| panic!("cannot build the plugins' HTTP client: {e}"))
    })
}

/// Headers the client sets itself: a plugin giving them could smuggle a second request or lie
/// about the host it reaches.
const RESERVED_HEADERS: [&str; 6] =
    ["host", "content-length", "transfer-encoding", "connection", "upgrade", "te"];

/// Check `req` against `grant` (everything but the per-message count, which the caller keeps),
/// then make the call and read the whole response.
pub async fn fetch(grant: &HttpGrant, req: Request) -> Result<Response, EgressError> {
    let url = reqwest::Url::parse(&req.url)
        .map_err(|e| EgressError::Invalid(format!("`{}` is not an absolute URL: {e}", req.url)))?;
    let default_port = match url.scheme() {
        "http" => 80,
        "https" => 443,
        other => {
            return Err(EgressError::Invalid(format!("scheme `{other}` is not allowed: http or https only")));
        }
    };
    let port = url.port().unwrap_or(default_port);
    let host_text = url.host_str().unwrap_or_default().to_owned();
    let host = match url.host() {
        Some(url::Host::Domain(d)) => UrlHost::Name(d),
        Some(url::Host::Ipv4(a)) => UrlHost::Ip(IpAddr::V4(a)),
        Some(url::Host::Ipv6(a)) => UrlHost::Ip(IpAddr::V6(a)),
        None => return Err(EgressError::Invalid(format!("`{}` has no host", req.url))),
    };
    if !grant.allow.iter().any(|a| a.covers(&host, port, default_port)) {
        let listed = if grant.allow.is_empty() {
            "the list is empty".to_owned()
        } else {
            format!("it has {}", grant.allow.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
        };
        return Err(EgressError::NotAllowed(format!(
            "`{host_text}:{port}` is not on the allow-list (`{}`; {listed})",
            grant.allow_key
        )));
    }
    let method = reqwest::Method::from_bytes(req.method.as_bytes())
        .map_err(|_| EgressError::Invalid(format!("`{}` is not an HTTP method", req.method)))?;
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &req.headers {
        let n = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| EgressError::Invalid(format!("`{name}` is not a header name")))?;
        if RESERVED_HEADERS.contains(&n.as_str()) {
            return Err(EgressError::Invalid(format!("header `{name}` is set by the host, not the plugin")));
        }
        let v = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
            EgressError::Invalid(format!(
                "the value of header `{name}` has characters a header may not carry"
            ))
        })?;
        headers.append(n, v);
    }
    // Last, so a malformed request does not use up the tenant's rate.
    if let Some(rates) = &grant.rates
        && !rates.http_ready()
    {
        return Err(EgressError::Limit(format!(
            "over the tenant's {} HTTP calls per second (`limits.http_calls_per_sec`)",
            rates.limits().http_calls_per_sec
        )));
    }
    let timeout = req.timeout.map_or(grant.timeout, |t| t.min(grant.timeout));
    let mut builder = client().request(method, url).headers(headers);
    if let Some(body) = req.body {
        builder = builder.body(body);
    }
    let cap = grant.max_response_bytes;
    let host_for_timeout = host_text.clone();
    let exchange = async move {
        let mut resp = builder.send().await.map_err(|e| classify(&e, &host_text))?;
        if let Some(n) = resp.content_length()
            && n > cap as u64
        {
            return Err(EgressError::TooLarge(format!(
                "`{host_text}` announced a body of {n} bytes, over the cap of {cap}"
            )));
        }
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&e, &host_text))? {
            if body.len() + chunk.len() > cap {
                return Err(EgressError::TooLarge(format!(
                    "`{host_text}` sent a body over the cap of {cap} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response { status, headers, body })
    };
    tokio::time::timeout(timeout, exchange).await.unwrap_or_else(|_| {
        Err(EgressError::Timeout(format!(
            "no whole response from `{host_for_timeout}` within {} ms",
            timeout.as_millis()
        )))
    })
}

/// One sentence for a client error, finding our resolver's refusal in its chain.
fn classify(e: &reqwest::Error, host: &str) -> EgressError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Refused>() {
            return EgressError::NotAllowed(r.0.clone());
        }
        source = s.source();
    }
    let mut chain = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_timeout() {
        return EgressError::Timeout(format!("`{host}`: {chain}"));
    }
    EgressError::Failed(format!("`{host}`: {chain}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_addresses_are_not_public_however_spelled() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            assert!(non_public(a.parse().unwrap()).is_some(), "{a} must not be public");
        }
        for a in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert_eq!(non_public(a.parse().unwrap()), None, "{a} is public");
        }
        assert_eq!(
            non_public("169.254.169.254".parse().unwrap()),
            Some("link-local (where cloud metadata services answer)")
        );
    }

    #[test]
    fn odd_spellings_of_loopback_are_parsed_to_loopback_before_the_list_is_asked() {
        for url in ["http://2130706433/", "http://0x7f.1/", "http://127.1/", "http://[::ffff:7f00:1]/"] {
            let u = reqwest::Url::parse(url).unwrap();
            let ip: IpAddr = match u.host().unwrap() {
                url::Host::Ipv4(a) => a.into(),
                url::Host::Ipv6(a) => a.into(),
                url::Host::Domain(d) => panic!("{url} parsed as the name {d}"),
            };
            assert_eq!(non_public(ip), Some("loopback"), "{url}");
        }
    }
}
