//! Whether the bridge's public URL points at a private or loopback address (Chatwoot ≥ 4.14 refuses to
//! deliver webhooks there unless `SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true`).

use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs as _};
use std::time::Duration;

/// How long the name lookup of the public URL's host may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the public URL's host leads, as far as this machine can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKind {
    /// Private, loopback or link-local; the text says which, in words.
    Private(String),
    Public,
    /// The name does not resolve here (Chatwoot may still resolve it).
    Unresolved,
}

/// Classifies the host of `url`. Names are resolved from this machine (which is usually, but not always,
/// what Chatwoot sees).
pub async fn classify_url_host(url: &str) -> HostKind {
    let Ok(parsed) = url::Url::parse(url) else { return HostKind::Unresolved };
    let port = parsed.port_or_known_default().unwrap_or(80);
    match parsed.host() {
        Some(url::Host::Ipv4(ip)) => classify_ip(IpAddr::V4(ip)).map_or(HostKind::Public, HostKind::Private),
        Some(url::Host::Ipv6(ip)) => classify_ip(IpAddr::V6(ip)).map_or(HostKind::Public, HostKind::Private),
        Some(url::Host::Domain(name)) => classify_name(name, port).await,
        None => HostKind::Unresolved,
    }
}

async fn classify_name(name: &str, port: u16) -> HostKind {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return HostKind::Private("`localhost`, a loopback name".to_owned());
    }
    if !name.contains('.') {
        return HostKind::Private(format!(
            "`{name}`, a single-label name that only resolves inside a private network (e.g. a Docker service)"
        ));
    }
    // A blocking lookup on a detached thread: a hanging resolver must not hold the process after the
    // report (a runtime waits for its own blocking tasks when it shuts down).
    let (tx, rx) = tokio::sync::oneshot::channel();
    let target = format!("{name}:{port}");
    let spawned = std::thread::Builder::new().name("doctor-dns".into()).spawn(move || {
        let addresses: Option<Vec<IpAddr>> = target.to_socket_addrs().ok().map(|a| a.map(|s| s.ip()).collect());
        let _ = tx.send(addresses);
    });
    if spawned.is_err() {
        return HostKind::Unresolved;
    }
    match tokio::time::timeout(LOOKUP_TIMEOUT, rx).await {
        Ok(Ok(Some(addresses))) if !addresses.is_empty() => {
            match addresses.iter().find_map(|ip| classify_ip(*ip).map(|what| (ip, what))) {
                Some((ip, what)) => HostKind::Private(format!("`{name}`, which resolves to {ip} ({what})")),
                None => HostKind::Public,
            }
        }
        _ => HostKind::Unresolved,
    }
}

/// `Some(what)` when `ip` is not a public unicast address.
pub fn classify_ip(ip: IpAddr) -> Option<String> {
    let what = match ip {
        IpAddr::V4(v4) => classify_v4(v4)?,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                classify_v4(v4)?
            } else if v6.is_loopback() {
                "loopback"
            } else if v6.is_unspecified() {
                "unspecified"
            } else if v6.is_unique_local() {
                "private (unique local)"
            } else if v6.is_unicast_link_local() {
                "link-local"
            } else {
                return None;
            }
        }
    };
    Some(format!("{ip} is {what}"))
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private"
    } else if ip.is_link_local() {
        "link-local"
    } else if ip.is_unspecified() || a == 0 {
        "unspecified"
    } else if a == 100 && (64..128).contains(&b) {
        "shared address space (carrier-grade NAT)"
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_addresses() {
        for private in ["127.0.0.1", "10.1.2.3", "172.20.0.5", "192.168.1.10", "169.254.1.1", "100.64.0.1", "::1"] {
            assert!(classify_ip(private.parse().unwrap()).is_some(), "{private}");
        }
        for private in ["fd00::1", "fe80::1", "::ffff:192.168.0.1"] {
            assert!(classify_ip(private.parse().unwrap()).is_some(), "{private}");
        }
        for public in ["8.8.8.8", "172.32.0.1", "2001:4860:4860::8888"] {
            assert!(classify_ip(public.parse().unwrap()).is_none(), "{public}");
        }
    }

    #[actix_web::test]
    async fn classifies_urls() {
        assert!(matches!(classify_url_host("http://127.0.0.1:8080").await, HostKind::Private(_)));
        assert!(matches!(classify_url_host("http://localhost:8080").await, HostKind::Private(_)));
        assert!(matches!(classify_url_host("http://bridge:8080").await, HostKind::Private(_)));
        assert!(matches!(classify_url_host("http://[::1]:8080").await, HostKind::Private(_)));
        assert_eq!(classify_url_host("https://203.0.113.9").await, HostKind::Public);
    }
}
