//! Reading a seccomp profile: one serde model for both the OCI `linux.seccomp` format (what
//! containerd reads and the security-profiles-operator writes) and Docker's format (`archMap`,
//! `includes` / `excludes`, `name` or `names`), validated into [`Profile`] so that rendering it
//! for a container can't fail on the profile's content.

use std::str::FromStr;

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::host::KernelVersion;

/// A profile as written, before validation. Unknown fields (`comment`...) are ignored, as by
/// Docker and containerd.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProfile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    arch_map: Option<Vec<RawArchMap>>,
    #[serde(default)]
    flags: Option<Vec<String>>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Option<Vec<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRule {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Option<Vec<String>>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<RawArg>>,
    #[serde(default)]
    includes: Option<RawFilter>,
    #[serde(default)]
    excludes: Option<RawFilter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawArg {
    index: usize,
    value: u64,
    #[serde(default)]
    value_two: Option<u64>,
    op: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFilter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// A validated profile.
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    pub default_action: LinuxSeccompAction,
    pub default_errno_ret: Option<u32>,
    pub arches: Arches,
    pub flags: Vec<LinuxSeccompFilterFlag>,
    pub listener_path: Option<String>,
    pub listener_metadata: Option<String>,
    pub rules: Vec<Rule>,
}

/// Which architectures the filter covers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arches {
    /// Neither `architectures` nor `archMap`: runc / libseccomp use the native one.
    Native,
    /// OCI `architectures`, used as they are.
    Listed(Vec<Arch>),
    /// Docker's `archMap`: the entry of the native architecture, with its sub-architectures.
    Map(Vec<(Arch, Vec<Arch>)>),
}

#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub names: Vec<String>,
    pub action: LinuxSeccompAction,
    pub errno_ret: Option<u32>,
    pub args: Vec<LinuxSeccompArg>,
    pub includes: Filter,
    pub excludes: Filter,
}

/// Docker's `includes` / `excludes` condition. Empty parts don't take part in the decision.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    /// None: a name oci-spec doesn't know as a capability. Docker compares the names as
    /// strings, so such a name is never in the container's set; kept that way.
    pub caps: Vec<Option<Capability>>,
    /// Go `GOARCH` names, compared as strings as Docker does.
    pub arches: Vec<String>,
    pub min_kernel: Option<KernelVersion>,
}

/// Parses and validates a profile; the error is the problem, without saying which file (the
/// caller knows).
pub(crate) fn parse(data: &[u8]) -> Result<Profile, String> {
    let raw: RawProfile =
        serde_json::from_slice(data).map_err(|e| format!("not a valid seccomp profile: {e}"))?;
    let default_action = action(&raw.default_action)?;

    let listed = raw.architectures.unwrap_or_default();
    let map = raw.arch_map.unwrap_or_default();
    // Docker refuses the ambiguity too: which of the two lists would apply?
    if !listed.is_empty() && !map.is_empty() {
        return Err("both \"architectures\" and \"archMap\" are set; use one of them".into());
    }
    let arches = if !listed.is_empty() {
        Arches::Listed(listed.iter().map(|a| arch(a)).collect::<Result<_, _>>()?)
    } else if !map.is_empty() {
        let mut entries = Vec::with_capacity(map.len());
        for m in &map {
            let subs = m.sub_architectures.as_deref().unwrap_or_default();
            entries.push((
                arch(&m.architecture)?,
                subs.iter().map(|a| arch(a)).collect::<Result<_, _>>()?,
            ));
        }
        Arches::Map(entries)
    } else {
        Arches::Native
    };

    let flags = raw
        .flags
        .unwrap_or_default()
        .iter()
        .map(|f| named::<LinuxSeccompFilterFlag>(f, "seccomp filter flag"))
        .collect::<Result<_, _>>()?;

    let raw_rules = raw.syscalls.unwrap_or_default();
    let mut rules = Vec::with_capacity(raw_rules.len());
    for (i, r) in raw_rules.into_iter().enumerate() {
        rules.push(rule(r).map_err(|e| format!("syscalls[{i}]: {e}"))?);
    }

    Ok(Profile {
        default_action,
        default_errno_ret: raw.default_errno_ret,
        arches,
        flags,
        listener_path: raw.listener_path.filter(|p| !p.is_empty()),
        listener_metadata: raw.listener_metadata.filter(|m| !m.is_empty()),
        rules,
    })
}

fn rule(r: RawRule) -> Result<Rule, String> {
    let names = match (r.name, r.names) {
        (Some(_), Some(names)) if !names.is_empty() => {
            return Err("both \"name\" and \"names\" are set; use one of them".into());
        }
        (Some(name), _) => vec![name],
        (None, names) => names.unwrap_or_default(),
    };
    if names.is_empty() {
        return Err("the rule names no syscall".into());
    }
    if names.iter().any(|n| n.trim().is_empty()) {
        return Err("empty syscall name".into());
    }
    let args = r
        .args
        .unwrap_or_default()
        .iter()
        .map(arg)
        .collect::<Result<_, _>>()?;
    Ok(Rule {
        names,
        action: action(&r.action)?,
        errno_ret: r.errno_ret,
        args,
        includes: filter(r.includes.unwrap_or_default())?,
        excludes: filter(r.excludes.unwrap_or_default())?,
    })
}

fn arg(a: &RawArg) -> Result<LinuxSeccompArg, String> {
    // Syscalls have at most six arguments; libseccomp refuses a higher index.
    if a.index > 5 {
        return Err(format!("argument index {} is not in 0..=5", a.index));
    }
    let mut b = LinuxSeccompArgBuilder::default()
        .index(a.index)
        .value(a.value)
        .op(named::<LinuxSeccompOperator>(&a.op, "seccomp operator")?);
    if let Some(two) = a.value_two {
        b = b.value_two(two);
    }
    // oci-spec's builder defaults every field, so this cannot fail; the profile's reasons are
    // sentences, so a failure would only be one more.
    b.build().map_err(|e| e.to_string())
}

fn filter(f: RawFilter) -> Result<Filter, String> {
    let caps = f
        .caps
        .unwrap_or_default()
        .iter()
        .map(|c| {
            c.strip_prefix("CAP_")
                .and_then(|short| Capability::from_str(short).ok())
        })
        .collect();
    let min_kernel = match f.min_kernel.as_deref() {
        None | Some("") => None,
        Some(k) => Some(
            KernelVersion::parse(k)
                .ok_or_else(|| format!("minKernel {k:?} is not <major>.<minor>"))?,
        ),
    };
    Ok(Filter {
        caps,
        arches: f.arches.unwrap_or_default(),
        min_kernel,
    })
}

fn action(s: &str) -> Result<LinuxSeccompAction, String> {
    named(s, "seccomp action")
}

fn arch(s: &str) -> Result<Arch, String> {
    named(s, "seccomp architecture")
}

/// One of oci-spec's enums by its `SCMP_...` / `SECCOMP_...` name, as serde spells it (the
/// names runc accepts).
fn named<T: DeserializeOwned>(s: &str, what: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("unknown {what} {s:?}"))
}
