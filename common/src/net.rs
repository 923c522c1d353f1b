//! The address a server advertises when it binds a wildcard address and none is configured.
//!
//! Pulsar and BookKeeper advertise the local host's address by default; so does Magnetar. In a
//! container that is the container's IP address, which other containers on its networks (and
//! the host) can reach, so a scaled Compose service needs no per-replica setting.

use std::net::{IpAddr, ToSocketAddrs};

/// The IP address this machine's host name resolves to (the first that is not loopback), else
/// the host name itself; `None` when the host name cannot be read.
pub fn default_advertised_host() -> Option<String> {
    let name = host_name()?;
    let resolved = (name.as_str(), 0)
        .to_socket_addrs()
        .ok()
        .into_iter()
        .flatten()
        .map(|a| a.ip())
        .find(|ip| !ip.is_loopback() && !ip.is_unspecified());
    Some(match resolved {
        Some(IpAddr::V4(ip)) => ip.to_string(),
        Some(IpAddr::V6(ip)) => format!("[{ip}]"),
        None => name,
    })
}

fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_host_is_found_and_is_not_loopback() {
        let host = default_advertised_host().expect("a host name");
        assert!(!host.is_empty());
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            assert!(!ip.is_loopback(), "{ip}");
        }
    }
}
