//! Plugin results (spec section "Success") and errors (section "Error").
//!
//! Versions 0.3.0 through 1.1.0 share one shape; the differences are fields that were dropped (the
//! per-IP `version` in 1.0.0) or added (`mtu`, `socketPath`, route attributes in 1.1.0), so one
//! lenient type reads them all. The raw JSON is kept as well, because it is what gets persisted and
//! handed back to plugins as `prevResult`, and a plugin may have added keys of its own.

use std::net::IpAddr;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::Cidr;
use crate::cni::version::Version;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CniResult {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: ResultDns,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default)]
    pub mac: String,
    /// The netns path for interfaces inside the sandbox; empty for host-side ones (bridge, veth peer).
    #[serde(default)]
    pub sandbox: String,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default, rename = "socketPath")]
    pub socket_path: Option<String>,
    #[serde(default, rename = "pciID")]
    pub pci_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IpConfig {
    /// "4" or "6" in 0.3.x/0.4.0, absent from 1.0.0 on (the address says it).
    #[serde(default)]
    pub version: Option<String>,
    #[serde(deserialize_with = "cidr")]
    pub address: Cidr,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default)]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Route {
    #[serde(deserialize_with = "cidr")]
    pub dst: Cidr,
    #[serde(default)]
    pub gw: Option<IpAddr>,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub advmss: Option<u32>,
    #[serde(default)]
    pub priority: Option<u32>,
    #[serde(default)]
    pub table: Option<u32>,
    #[serde(default)]
    pub scope: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ResultDns {
    #[serde(default)]
    pub nameservers: Vec<String>,
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub search: Vec<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

fn cidr<'de, D: Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

impl CniResult {
    /// Parses a result of any supported version; 0.1.0/0.2.0 results (`ip4`/`ip6`) are refused
    /// rather than misread as empty.
    pub fn parse(bytes: &[u8]) -> Result<(CniResult, Value), String> {
        let raw: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let version = raw
            .get("cniVersion")
            .and_then(Value::as_str)
            .ok_or("no \"cniVersion\" in result")?;
        match Version::parse(version) {
            Some(v) if v >= Version::new(0, 3, 0) && v.major <= 1 => {}
            _ => return Err(format!("unsupported result version {version:?}")),
        }
        let result = CniResult::deserialize(&raw).map_err(|e| format!("invalid result: {e}"))?;
        Ok((result, raw))
    }

    /// The pod's addresses: those on interfaces inside the sandbox (or not tied to an interface),
    /// except loopback ones (a chained loopback plugin reports 127.0.0.1), in result order with
    /// IPv4 before IPv6, so the first is what CRI reports as the pod IP.
    pub fn pod_ips(&self) -> Vec<IpAddr> {
        let in_sandbox = |ip: &&IpConfig| match ip.interface {
            Some(i) => self
                .interfaces
                .get(i)
                .is_some_and(|i| !i.sandbox.is_empty()),
            None => true,
        };
        let mut ips: Vec<IpAddr> = self
            .ips
            .iter()
            .filter(in_sandbox)
            .map(|ip| ip.address.address)
            .filter(|ip| !ip.is_loopback())
            .collect();
        // Stable: keeps the plugin's order within a family.
        ips.sort_by_key(|ip| ip.is_ipv6());
        ips
    }
}

/// The JSON a plugin prints with a non-zero exit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PluginError {
    pub code: u32,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub details: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v0_3_and_0_4_results() {
        for version in ["0.3.0", "0.3.1", "0.4.0"] {
            let text = format!(
                r#"{{"cniVersion":"{version}",
                "interfaces":[{{"name":"cni0","mac":"aa:bb:cc:dd:ee:ff"}},
                              {{"name":"eth0","mac":"11:22:33:44:55:66","sandbox":"/run/netns/x"}}],
                "ips":[{{"version":"6","address":"fd00::5/64","interface":1}},
                       {{"version":"4","address":"10.1.0.5/16","gateway":"10.1.0.1","interface":1}}],
                "routes":[{{"dst":"0.0.0.0/0"}}],
                "dns":{{"nameservers":["10.1.0.10"],"search":["svc"]}}}}"#
            );
            let (result, raw) = CniResult::parse(text.as_bytes()).unwrap();
            assert_eq!(result.cni_version, version);
            assert_eq!(raw["cniVersion"], version);
            assert_eq!(result.ips[1].version.as_deref(), Some("4"));
            assert_eq!(result.ips[1].address.prefix_len, 16);
            assert_eq!(result.ips[1].gateway, Some("10.1.0.1".parse().unwrap()));
            assert_eq!(result.routes[0].gw, None);
            assert_eq!(result.dns.nameservers, ["10.1.0.10"]);
            let ips: Vec<String> = result.pod_ips().iter().map(|i| i.to_string()).collect();
            assert_eq!(ips, ["10.1.0.5", "fd00::5"]);
        }
    }

    #[test]
    fn v1_results() {
        let text = r#"{"cniVersion":"1.1.0",
            "interfaces":[{"name":"eth0","mac":"11:22:33:44:55:66","sandbox":"/run/netns/x","mtu":1450,"socketPath":"/s"}],
            "ips":[{"address":"10.1.0.5/24","gateway":"10.1.0.1","interface":0},
                   {"address":"192.168.0.9/32"}],
            "routes":[{"dst":"10.0.0.0/8","gw":"10.1.0.1","mtu":1400,"priority":5,"table":100,"scope":0}],
            "custom":{"kept":true}}"#;
        let (result, raw) = CniResult::parse(text.as_bytes()).unwrap();
        assert_eq!(result.interfaces[0].mtu, Some(1450));
        assert_eq!(result.routes[0].table, Some(100));
        assert_eq!(result.ips[0].version, None);
        assert_eq!(raw["custom"]["kept"], true);
        let (plain, _) = CniResult::parse(br#"{"cniVersion":"1.0.0"}"#).unwrap();
        assert!(plain.ips.is_empty() && plain.dns.nameservers.is_empty());
        assert_eq!(result.pod_ips().len(), 2);
    }

    #[test]
    fn host_side_addresses_are_not_pod_ips() {
        let text = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"cni0"},{"name":"eth0","sandbox":"/n"}],
            "ips":[{"address":"10.1.0.1/24","interface":0},{"address":"10.1.0.7/24","interface":1}]}"#;
        let (result, _) = CniResult::parse(text.as_bytes()).unwrap();
        assert_eq!(result.pod_ips(), ["10.1.0.7".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn rejects_old_and_broken_results() {
        for bad in [
            r#"{"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.2/24"}}"#,
            r#"{"ips":[]}"#,
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2"}]}"#,
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24","gateway":"x"}]}"#,
            "not json",
        ] {
            assert!(CniResult::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn plugin_errors() {
        let e: PluginError = serde_json::from_str(
            r#"{"cniVersion":"1.0.0","code":7,"msg":"bad config","details":"x"}"#,
        )
        .unwrap();
        assert_eq!(
            (e.code, e.msg.as_str(), e.details.as_str()),
            (7, "bad config", "x")
        );
        let bare: PluginError = serde_json::from_str(r#"{"code":11}"#).unwrap();
        assert!(bare.msg.is_empty());
    }
}
