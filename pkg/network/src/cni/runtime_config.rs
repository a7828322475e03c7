//! runtimeConfig capabilities (CNI conventions document) and the stdin each plugin gets.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::cni::CniError;
use crate::cni::config::{NetworkConfigList, PluginConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The spelling portmap expects.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// Case-insensitive, so CRI's `TCP`/`UDP`/`SCTP` enum names parse as they are.
impl std::str::FromStr for Protocol {
    type Err = CniError;
    fn from_str(s: &str) -> Result<Protocol, CniError> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "sctp" => Ok(Protocol::Sctp),
            _ => Err(CniError::InvalidRequest(format!(
                "unknown port protocol {:?}",
                s.chars().take(16).collect::<String>()
            ))),
        }
    }
}

/// The `portMappings` capability, as the portmap plugin reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
    /// Empty means every host address.
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// The `dns` capability.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default)]
    pub servers: Vec<String>,
    #[serde(default)]
    pub searches: Vec<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

/// The `bandwidth` capability: rates in bits per second, bursts in bits (the bandwidth plugin's
/// units; kubelet's `kubernetes.io/ingress-bandwidth` annotations convert to these).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    pub ingress_rate: u64,
    pub ingress_burst: u64,
    pub egress_rate: u64,
    pub egress_burst: u64,
}

/// The capability arguments of one pod, keyed by capability name. Only what the pod has is present,
/// so that a plugin declaring e.g. `portMappings` gets no empty entry for a pod without ports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CapabilityArgs(Map<String, Value>);

impl CapabilityArgs {
    pub fn new(
        port_mappings: &[PortMapping],
        dns: Option<&Dns>,
        bandwidth: Option<&Bandwidth>,
        ip_ranges: &[String],
    ) -> CapabilityArgs {
        let mut args = Map::new();
        if !port_mappings.is_empty() {
            args.insert("portMappings".into(), to_value(port_mappings));
        }
        if let Some(dns) = dns {
            args.insert("dns".into(), to_value(dns));
        }
        if let Some(bandwidth) = bandwidth {
            args.insert("bandwidth".into(), to_value(bandwidth));
        }
        if !ip_ranges.is_empty() {
            // One range set per CIDR: host-local allocates one address from each set, which is
            // what dual stack needs.
            let sets: Vec<Value> = ip_ranges
                .iter()
                .map(|subnet| serde_json::json!([{ "subnet": subnet }]))
                .collect();
            args.insert("ipRanges".into(), Value::Array(sets));
        }
        CapabilityArgs(args)
    }

    pub fn get(&self, capability: &str) -> Option<&Value> {
        self.0.get(capability)
    }
}

/// These types hold only strings and integers, which always serialize.
fn to_value<T: Serialize>(value: T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The JSON a plugin reads on stdin: its own configuration with the list's `name` and `cniVersion`
/// injected, `runtimeConfig` restricted to the capabilities it declared, and `prevResult` if any.
pub(crate) fn plugin_stdin(
    list: &NetworkConfigList,
    plugin: &PluginConfig,
    caps: &CapabilityArgs,
    prev_result: Option<&Value>,
) -> Vec<u8> {
    let mut conf = plugin.conf().clone();
    conf.insert("name".into(), Value::String(list.name().to_string()));
    conf.insert(
        "cniVersion".into(),
        Value::String(list.cni_version().to_string()),
    );
    let runtime: Map<String, Value> = plugin
        .capabilities()
        .iter()
        .filter_map(|cap| caps.get(cap).map(|v| (cap.clone(), v.clone())))
        .collect();
    if !runtime.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    if let Some(prev) = prev_result {
        conf.insert("prevResult".into(), prev.clone());
    }
    serde_json::to_vec(&Value::Object(conf)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> NetworkConfigList {
        NetworkConfigList::from_conflist_bytes(
            br#"{"cniVersion":"1.0.0","name":"pods","plugins":[
                {"type":"bridge","name":"ignored","cniVersion":"0.1.0"},
                {"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false}},
                {"type":"bandwidth","capabilities":{"bandwidth":true}}]}"#,
            "t",
        )
        .unwrap()
    }

    fn caps() -> CapabilityArgs {
        CapabilityArgs::new(
            &[PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp,
                host_ip: String::new(),
            }],
            Some(&Dns {
                servers: vec!["10.96.0.10".into()],
                ..Dns::default()
            }),
            Some(&Bandwidth {
                ingress_rate: 1_000_000,
                ..Bandwidth::default()
            }),
            &["10.244.1.0/24".to_string(), "fd00::/64".to_string()],
        )
    }

    fn stdin(i: usize, prev: Option<&Value>) -> Value {
        let list = list();
        serde_json::from_slice(&plugin_stdin(&list, &list.plugins()[i], &caps(), prev)).unwrap()
    }

    #[test]
    fn injects_name_version_and_prev_result() {
        let prev = serde_json::json!({"cniVersion":"1.0.0","ips":[]});
        let conf = stdin(0, Some(&prev));
        assert_eq!(conf["name"], "pods");
        assert_eq!(conf["cniVersion"], "1.0.0");
        assert_eq!(conf["type"], "bridge");
        assert_eq!(conf["prevResult"], prev);
        assert!(conf.get("runtimeConfig").is_none(), "{conf}");
        assert!(stdin(0, None).get("prevResult").is_none());
    }

    #[test]
    fn runtime_config_only_for_declared_capabilities() {
        let portmap = stdin(1, None);
        assert_eq!(
            portmap["runtimeConfig"],
            serde_json::json!({"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]})
        );
        let bandwidth = stdin(2, None);
        assert_eq!(
            bandwidth["runtimeConfig"]["bandwidth"],
            serde_json::json!({"ingressRate":1000000,"ingressBurst":0,"egressRate":0,"egressBurst":0})
        );
    }

    #[test]
    fn capability_shapes() {
        let caps = caps();
        assert_eq!(
            caps.get("ipRanges"),
            Some(&serde_json::json!([[{"subnet":"10.244.1.0/24"}],[{"subnet":"fd00::/64"}]]))
        );
        assert_eq!(
            caps.get("dns"),
            Some(&serde_json::json!({"servers":["10.96.0.10"],"searches":[],"options":[]}))
        );
        assert_eq!("TCP".parse::<Protocol>().unwrap(), Protocol::Tcp);
        assert_eq!("sctp".parse::<Protocol>().unwrap().as_str(), "sctp");
        assert!("icmp".parse::<Protocol>().is_err());
        let none = CapabilityArgs::new(&[], None, None, &[]);
        assert_eq!(none, CapabilityArgs::default());
    }
}
