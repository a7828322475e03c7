//! Process capabilities: the default set, CRI's add/drop, privileged.

use std::str::FromStr;

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, LinuxCapabilitiesBuilder};

use crate::defaults::{
    ALL_CAPABILITIES, DEFAULT_CAPABILITIES, capability_number, own_capability_mask,
};
use crate::{Security, SpecError};

/// The bounding, effective and permitted sets; inheritable and ambient hold only the requested
/// ambient capabilities.
///
/// Privileged, and `ALL` in `add_capabilities`, mean every capability berthd itself has (as
/// containerd's `WithAllCurrentCapabilities`): asking runc for one berthd lacks (e.g.
/// CAP_SYS_RESOURCE when berthd runs in a restricted container) would fail the start with EPERM.
/// Privileged ignores add/drop, as in containerd.
///
/// An ambient capability lets a non-root process keep it across `execve` of a file without file
/// capabilities. The kernel only raises one that is also permitted and inheritable (and in the
/// bounding set), so each is added to all five sets: asking for it means the process holds it.
pub(crate) fn capabilities(security: &Security) -> Result<LinuxCapabilities, SpecError> {
    let mut set = if security.privileged {
        all_current()
    } else {
        requested(security)?
    };
    let mut ambient = Capabilities::new();
    for c in &security.add_ambient_capabilities {
        if c.eq_ignore_ascii_case("ALL") {
            return Err(SpecError::AllAmbientCapabilities);
        }
        let cap = parse(c)?;
        set.insert(cap);
        ambient.insert(cap);
    }
    Ok(LinuxCapabilitiesBuilder::default()
        .bounding(set.clone())
        .effective(set.clone())
        .permitted(set)
        .inheritable(ambient.clone())
        .ambient(ambient)
        .build()?)
}

/// containerd's order: `ALL` added, `ALL` dropped, then the single adds, then the single drops
/// (so `add: [ALL], drop: [CHOWN]` is everything but CHOWN).
fn requested(security: &Security) -> Result<Capabilities, SpecError> {
    let is_all = |c: &String| c.eq_ignore_ascii_case("ALL");
    let mut set: Capabilities = DEFAULT_CAPABILITIES
        .iter()
        .map(|c| parse(c))
        .collect::<Result<_, _>>()?;
    if security.add_capabilities.iter().any(is_all) {
        set = all_current();
    }
    if security.drop_capabilities.iter().any(is_all) {
        set.clear();
    }
    for c in security.add_capabilities.iter().filter(|c| !is_all(c)) {
        set.insert(parse(c)?);
    }
    for c in security.drop_capabilities.iter().filter(|c| !is_all(c)) {
        set.remove(&parse(c)?);
    }
    Ok(set)
}

/// `NET_ADMIN`, `CAP_NET_ADMIN`, `net_admin`.
fn parse(name: &str) -> Result<Capability, SpecError> {
    let upper = name.trim().to_ascii_uppercase();
    let short = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if !ALL_CAPABILITIES.contains(&short) {
        return Err(SpecError::UnknownCapability(name.to_string()));
    }
    Capability::from_str(short).map_err(|_| SpecError::UnknownCapability(name.to_string()))
}

/// Every capability oci-spec knows that berthd has in its effective set (all of them when the
/// mask can't be read).
fn all_current() -> Capabilities {
    let mask = own_capability_mask("CapEff");
    ALL_CAPABILITIES
        .iter()
        .filter(|name| match (mask, capability_number(name)) {
            (Some(mask), Some(bit)) => mask & (1u64 << bit) != 0,
            _ => true,
        })
        .filter_map(|name| Capability::from_str(name).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(add: &[&str], drop: &[&str]) -> Security {
        Security {
            add_capabilities: add.iter().map(|s| s.to_string()).collect(),
            drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn effective(s: &Security) -> Capabilities {
        capabilities(s).unwrap().effective().clone().unwrap()
    }

    #[test]
    fn default_set_in_bounding_effective_permitted_only() {
        let caps = capabilities(&Security::default()).unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 14);
        assert_eq!(caps.bounding(), caps.effective());
        assert_eq!(caps.bounding(), caps.permitted());
        assert!(caps.inheritable().as_ref().unwrap().is_empty());
        assert!(caps.ambient().as_ref().unwrap().is_empty());
        assert!(
            caps.bounding()
                .as_ref()
                .unwrap()
                .contains(&Capability::AuditWrite)
        );
        assert!(
            !caps
                .bounding()
                .as_ref()
                .unwrap()
                .contains(&Capability::SysAdmin)
        );
    }

    #[test]
    fn add_and_drop() {
        let e = effective(&sec(&["NET_ADMIN", "cap_sys_time"], &["CAP_CHOWN", "kill"]));
        assert_eq!(e.len(), 14);
        assert!(e.contains(&Capability::NetAdmin) && e.contains(&Capability::SysTime));
        assert!(!e.contains(&Capability::Chown) && !e.contains(&Capability::Kill));

        let e = effective(&sec(&["NET_BIND_SERVICE"], &["ALL"]));
        assert_eq!(
            e.into_iter().collect::<Vec<_>>(),
            vec![Capability::NetBindService]
        );

        let e = effective(&sec(&["ALL"], &["CHOWN"]));
        assert_eq!(e.len(), all_current().len() - 1);
        assert!(e.contains(&Capability::SysAdmin) && !e.contains(&Capability::Chown));

        assert!(effective(&sec(&[], &["all"])).is_empty());
    }

    #[test]
    fn ambient_capabilities_are_held_in_every_set() {
        let s = Security {
            add_ambient_capabilities: vec!["NET_ADMIN".into(), "CAP_NET_BIND_SERVICE".into()],
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        };
        let caps = capabilities(&s).unwrap();
        let want: Capabilities = [Capability::NetAdmin, Capability::NetBindService]
            .into_iter()
            .collect();
        for set in [
            caps.bounding(),
            caps.effective(),
            caps.permitted(),
            caps.inheritable(),
            caps.ambient(),
        ] {
            assert_eq!(set.as_ref().unwrap(), &want);
        }
        for bad in ["ALL", "CAP_NOPE"] {
            let s = Security {
                add_ambient_capabilities: vec![bad.into()],
                ..Default::default()
            };
            assert!(
                matches!(
                    capabilities(&s),
                    Err(SpecError::AllAmbientCapabilities | SpecError::UnknownCapability(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_capabilities_are_invalid() {
        for (add, drop) in [(&["NET_MAGIC"][..], &[][..]), (&[], &["CAP_"])] {
            let err = capabilities(&sec(add, drop)).unwrap_err();
            assert!(matches!(err, SpecError::UnknownCapability(_)), "{err}");
        }
    }

    #[test]
    fn privileged_gets_everything_berthd_has() {
        let s = Security {
            privileged: true,
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        };
        let e = effective(&s);
        assert_eq!(e, all_current());
        assert!(e.contains(&Capability::SysAdmin));
        if let Some(mask) = own_capability_mask("CapEff") {
            assert_eq!(
                u32::try_from(e.len()).unwrap(),
                (mask & ((1u64 << 41) - 1)).count_ones()
            );
        }
    }
}
