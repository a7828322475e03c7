//! Pod CIDRs: parsing, and keeping the current value across berthd restarts.

use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use crate::NetworkError;

/// One CIDR block, e.g. `10.244.1.0/24` or `fd00:10:244:1::/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub address: IpAddr,
    pub prefix_len: u8,
}

impl std::str::FromStr for Cidr {
    type Err = NetworkError;
    fn from_str(s: &str) -> Result<Cidr, NetworkError> {
        let invalid = |reason: &str| NetworkError::InvalidCidr {
            value: excerpt(s),
            reason: reason.to_string(),
        };
        let (addr, len) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| invalid("expected address/prefix-length"))?;
        let address: IpAddr = addr.parse().map_err(|_| invalid("not an IP address"))?;
        let prefix_len: u8 = len.parse().map_err(|_| invalid("bad prefix length"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(invalid("prefix length too large for the address family"));
        }
        Ok(Cidr {
            address,
            prefix_len,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// Input echoed in an error is cut short: error messages travel in gRPC headers, and a request may be
/// megabytes long.
fn excerpt(value: &str) -> String {
    const MAX: usize = 64;
    match value.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}… ({} bytes)", &value[..cut], value.len()),
        None => value.to_string(),
    }
}

/// The node's pod CIDRs: one per IP family at most (kubelet sends `a,b` for dual stack).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodCidrs(pub Vec<Cidr>);

impl PodCidrs {
    /// Parses kubelet's comma-separated form. An empty string parses to no CIDRs.
    pub fn parse(value: &str) -> Result<PodCidrs, NetworkError> {
        let cidrs = value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Cidr>, _>>()?;
        let v4 = cidrs.iter().filter(|c| c.address.is_ipv4()).count();
        if v4 > 1 || cidrs.len() - v4 > 1 {
            return Err(NetworkError::InvalidCidr {
                value: excerpt(value),
                reason: "at most one CIDR per IP family".to_string(),
            });
        }
        Ok(PodCidrs(cidrs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One string per CIDR, as the CNI `ipRanges` capability takes them.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(Cidr::to_string).collect()
    }
}

impl fmt::Display for PodCidrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(Cidr::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// The current pod CIDRs, persisted under the state dir so a restarted berthd keeps what kubelet said
/// (kubelet only sends it again when it changes).
#[derive(Debug)]
pub struct PodCidrStore {
    path: PathBuf,
    current: RwLock<PodCidrs>,
}

impl PodCidrStore {
    /// Loads the persisted value; a missing or unreadable file means "none yet" (logged).
    pub fn open(state_dir: &Path) -> PodCidrStore {
        let path = state_dir.join("network").join("pod-cidr");
        let current = match std::fs::read_to_string(&path) {
            Ok(text) => PodCidrs::parse(&text).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "ignoring persisted pod CIDR");
                PodCidrs::default()
            }),
            Err(_) => PodCidrs::default(),
        };
        PodCidrStore {
            path,
            current: RwLock::new(current),
        }
    }

    pub fn get(&self) -> PodCidrs {
        self.current
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Persists then publishes the new value: write to a temp file, fsync, rename.
    pub fn set(&self, cidrs: PodCidrs) -> Result<(), NetworkError> {
        let persist = |source| NetworkError::Persist {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir).map_err(persist)?;
        let tmp = self.path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp).map_err(persist)?;
        file.write_all(cidrs.to_string().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(persist)?;
        std::fs::rename(&tmp, &self.path).map_err(persist)?;
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *current = cidrs;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_dual_stack() {
        let one = PodCidrs::parse("10.244.1.0/24").unwrap();
        assert_eq!(one.to_string(), "10.244.1.0/24");
        let dual = PodCidrs::parse("10.244.1.0/24, fd00:10:244:1::/64").unwrap();
        assert_eq!(dual.0.len(), 2);
        assert!(PodCidrs::parse("").unwrap().is_empty());
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "fd00::/129",
            "banana/8",
            "10.0.0.0/8,10.1.0.0/16",
        ] {
            assert!(PodCidrs::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn huge_input_is_not_echoed_whole() {
        let huge = "x".repeat(1 << 20);
        let message = PodCidrs::parse(&huge).unwrap_err().to_string();
        assert!(message.len() < 200, "{}", message.len());
    }

    #[test]
    fn persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = PodCidrStore::open(dir.path());
        assert!(store.get().is_empty());
        store.set(PodCidrs::parse("10.88.0.0/16").unwrap()).unwrap();
        let reopened = PodCidrStore::open(dir.path());
        assert_eq!(reopened.get().to_string(), "10.88.0.0/16");
    }
}
