//! Parsing of `--meta-url`: `etcd://HOST:PORT[,HOST:PORT…]`.

use crate::error::{MetaError, Result};

/// A parsed metadata-store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaUrl {
    /// An etcd cluster; endpoints as `host:port`.
    Etcd(Vec<String>),
}

impl std::str::FromStr for MetaUrl {
    type Err = MetaError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            MetaError::Invalid(format!(
                "bad metadata URL {s:?}: {why}; expected etcd://HOST:PORT[,HOST:PORT]"
            ))
        };
        let rest = s
            .strip_prefix("etcd://")
            .ok_or_else(|| bad("unknown scheme"))?;
        let endpoints: Vec<String> = rest
            .trim_end_matches('/')
            .split(',')
            .map(str::trim)
            .map(str::to_owned)
            .collect();
        for e in &endpoints {
            let (host, port) = e
                .rsplit_once(':')
                .ok_or_else(|| bad(&format!("endpoint {e:?} has no port")))?;
            if host.is_empty() {
                return Err(bad(&format!("endpoint {e:?} has no host")));
            }
            port.parse::<u16>()
                .map_err(|_| bad(&format!("endpoint {e:?} has a bad port")))?;
        }
        Ok(MetaUrl::Etcd(endpoints))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoint_lists() {
        assert_eq!(
            "etcd://a:2379,b:2380".parse::<MetaUrl>().unwrap(),
            MetaUrl::Etcd(vec!["a:2379".into(), "b:2380".into()])
        );
        for bad in [
            "http://a:1",
            "etcd://",
            "etcd://a",
            "etcd://a:x",
            "etcd://:1",
        ] {
            let err = bad.parse::<MetaUrl>().unwrap_err().to_string();
            assert!(err.contains("expected etcd://"), "{bad}: {err}");
        }
    }
}
