//! Network counters of a pod, read inside its network namespace.

use std::path::Path;

use crate::StatsError;

/// One interface's counters, as `/proc/net/dev` gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceUsage {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// The pod's interfaces except loopback; `default` is kubelet's default interface (`eth0`)
/// when the pod has one, else the first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkUsage {
    pub default: Option<InterfaceUsage>,
    pub interfaces: Vec<InterfaceUsage>,
}

/// The interface kubelet and CNI plugins give pods.
pub const DEFAULT_INTERFACE: &str = "eth0";

/// Reads the counters of the network namespace pinned at `netns`. A thread enters the namespace
/// for the read (see `berth_namespace::run_in_netns`): `/proc/thread-self/net/dev` then shows
/// the pod's interfaces, which no host path does.
pub fn read(netns: &Path) -> Result<NetworkUsage, StatsError> {
    let text = berth_namespace::run_in_netns(netns, || {
        std::fs::read_to_string("/proc/thread-self/net/dev")
    })
    .map_err(|source| StatsError::EnterNetns {
        netns: netns.to_path_buf(),
        source,
    })?
    .map_err(|source| StatsError::ReadNetDev {
        netns: netns.to_path_buf(),
        source,
    })?;
    Ok(summarize(parse_net_dev(&text)?))
}

fn summarize(all: Vec<InterfaceUsage>) -> NetworkUsage {
    let interfaces: Vec<InterfaceUsage> = all.into_iter().filter(|i| i.name != "lo").collect();
    let default = interfaces
        .iter()
        .find(|i| i.name == DEFAULT_INTERFACE)
        .or_else(|| interfaces.first())
        .cloned();
    NetworkUsage {
        default,
        interfaces,
    }
}

/// Parses `/proc/net/dev`: two header lines, then `name: rx(8 fields) tx(8 fields)`.
pub(crate) fn parse_net_dev(text: &str) -> Result<Vec<InterfaceUsage>, StatsError> {
    let mut out = Vec::new();
    for line in text.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        let fields: Vec<u64> = counters
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|source| StatsError::NetDevNumber {
                line: line.to_string(),
                source,
            })?;
        if fields.len() < 16 {
            return Err(StatsError::NetDevFields {
                line: line.to_string(),
                fields: fields.len(),
            });
        }
        out.push(InterfaceUsage {
            name: name.trim().to_string(),
            rx_bytes: fields[0],
            rx_packets: fields[1],
            rx_errors: fields[2],
            rx_dropped: fields[3],
            tx_bytes: fields[8],
            tx_packets: fields[9],
            tx_errors: fields[10],
            tx_dropped: fields[11],
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0
  eth0:   10398      61    1    2    0     0          0         0     1446      17    3    4    0     0       0          0
";

    #[test]
    fn parses_and_skips_loopback() {
        let usage = summarize(parse_net_dev(SAMPLE).unwrap());
        assert_eq!(usage.interfaces.len(), 1);
        let eth0 = usage.default.unwrap();
        assert_eq!(eth0.name, "eth0");
        assert_eq!(
            (
                eth0.rx_bytes,
                eth0.rx_packets,
                eth0.rx_errors,
                eth0.rx_dropped
            ),
            (10398, 61, 1, 2)
        );
        assert_eq!(
            (
                eth0.tx_bytes,
                eth0.tx_packets,
                eth0.tx_errors,
                eth0.tx_dropped
            ),
            (1446, 17, 3, 4)
        );
    }

    #[test]
    fn garbage_is_an_error() {
        let bad = format!("{SAMPLE}  eth1: 1 2 x\n");
        assert!(parse_net_dev(&bad).is_err());
        assert!(parse_net_dev("a\nb\n  eth1: 1 2 3\n").is_err());
    }

    #[test]
    fn reads_the_host_namespace() {
        // Any process's netns works the same way as a pinned one.
        let usage = read(Path::new("/proc/self/ns/net")).unwrap();
        assert!(usage.interfaces.iter().all(|i| i.name != "lo"));
    }
}
