//! Arbitrary bytes as the stdout of a CNI plugin's ADD, through the result parser and the pod IP
//! selection.
//!
//! Properties: nothing panics; the pod IPs are a subset of the result's addresses, none of them
//! loopback, IPv4 before IPv6.
#![no_main]
// A panic in a fuzz target is a finding: its asserts, unwraps and expects are the properties.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use berth_network::cni::CniResult;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((result, _raw)) = CniResult::parse(data) else {
        return;
    };
    let ips = result.pod_ips();
    let all: Vec<_> = result.ips.iter().map(|ip| ip.address.address).collect();
    for ip in &ips {
        assert!(all.contains(ip));
        assert!(!ip.is_loopback());
    }
    let first_v6 = ips.iter().position(|ip| ip.is_ipv6()).unwrap_or(ips.len());
    assert!(ips[first_v6..].iter().all(|ip| ip.is_ipv6()));
    let _ = format!("{result:?}");
});
