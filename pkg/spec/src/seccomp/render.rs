//! A validated profile rendered for one container: Docker's conditions evaluated against the
//! container's bounding capabilities, the native architecture and the running kernel (as moby's
//! `setupSeccomp` does), and rules with the same action, errno and arguments merged into one
//! entry so config.json stays small.

use std::collections::HashSet;

use oci_spec::runtime::{
    Arch, Capabilities, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompBuilder,
    LinuxSyscallBuilder,
};

use super::compact;
use super::host::Host;
use super::profile::{Arches, Filter, Profile, Rule};
use crate::SpecError;

/// How far [`render`] may reshape the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A Localhost profile: its rules and architectures as the file has them (after Docker's
    /// conditions and the merge of identical rules).
    AsWritten,
    /// The built-in profile: the same decision for every syscall and argument on every ABI the
    /// kernel runs, in the form runc compiles fastest. `SCMP_ARCH_X32` is left out when the
    /// kernel has no x32 ABI ([`Host::x32`]), and argument rules are compacted
    /// ([`compact::compact`]). See README.md, "What the filter costs".
    Fast,
}

pub(crate) fn render(
    profile: &Profile,
    bounding_caps: &Capabilities,
    host: &Host,
    shape: Shape,
) -> Result<LinuxSeccomp, SpecError> {
    // Merged rules in the order of their first appearance, so the output follows the profile.
    let mut groups: Vec<Group> = Vec::new();
    for rule in profile
        .rules
        .iter()
        .filter(|r| applies(r, bounding_caps, host))
    {
        let at = match groups.iter().position(|g| g.same_match(rule)) {
            Some(at) => at,
            None => {
                groups.push(Group {
                    action: rule.action,
                    errno_ret: rule.errno_ret,
                    args: &rule.args,
                    names: Vec::new(),
                    seen: HashSet::new(),
                });
                groups.len() - 1
            }
        };
        let group = &mut groups[at];
        for name in &rule.names {
            // A syscall can sit in several groups of the profile (e.g. syslog under
            // CAP_SYS_ADMIN and CAP_SYSLOG); once is enough.
            if group.seen.insert(name) {
                group.names.push(name);
            }
        }
    }

    let mut syscalls = Vec::with_capacity(groups.len());
    for g in groups {
        let mut b = LinuxSyscallBuilder::default()
            .names(g.names.into_iter().map(String::from).collect::<Vec<_>>())
            .action(g.action);
        if let Some(errno) = g.errno_ret {
            b = b.errno_ret(errno);
        }
        if !g.args.is_empty() {
            b = b.args(g.args.to_vec());
        }
        syscalls.push(b.build()?);
    }
    if shape == Shape::Fast {
        syscalls = compact::compact(syscalls);
    }

    let mut b = LinuxSeccompBuilder::default()
        .default_action(profile.default_action)
        .syscalls(syscalls);
    if let Some(errno) = profile.default_errno_ret {
        b = b.default_errno_ret(errno);
    }
    if let Some(mut arches) = architectures(&profile.arches, host) {
        if shape == Shape::Fast && !host.x32 {
            // No process can run x32 code on this kernel: libseccomp then kills an x32 syscall
            // as one of an architecture it wasn't given, where the kernel would have failed it
            // with ENOSYS; every other syscall is decided as before.
            arches.retain(|a| *a != Arch::ScmpArchX32);
        }
        b = b.architectures(arches);
    }
    if !profile.flags.is_empty() {
        b = b.flags(profile.flags.clone());
    }
    if let Some(p) = &profile.listener_path {
        b = b.listener_path(p);
    }
    if let Some(m) = &profile.listener_metadata {
        b = b.listener_metadata(m);
    }
    Ok(b.build()?)
}

/// Rules that match the same calls the same way.
struct Group<'a> {
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    args: &'a [LinuxSeccompArg],
    names: Vec<&'a str>,
    seen: HashSet<&'a str>,
}

impl Group<'_> {
    fn same_match(&self, rule: &Rule) -> bool {
        self.action == rule.action && self.errno_ret == rule.errno_ret && self.args == rule.args
    }
}

/// None: leave `architectures` out, runc then filters the native architecture only.
fn architectures(arches: &Arches, host: &Host) -> Option<Vec<Arch>> {
    match arches {
        Arches::Native => None,
        Arches::Listed(list) => Some(list.clone()),
        Arches::Map(map) => {
            let native = host.arch?;
            let (arch, subs) = map.iter().find(|(arch, _)| *arch == native)?;
            let mut out = Vec::with_capacity(1 + subs.len());
            out.push(*arch);
            out.extend(subs.iter().filter(|s| *s != arch));
            Some(out)
        }
    }
}

/// Docker's semantics: a rule is dropped when any exclusion holds (native arch listed, any of
/// the caps in the bounding set, kernel at least minKernel), or when an inclusion doesn't (native
/// arch not listed, not all caps in the bounding set, kernel older than minKernel).
fn applies(rule: &Rule, caps: &Capabilities, host: &Host) -> bool {
    let has = |c: &Option<_>| c.as_ref().is_some_and(|c| caps.contains(c));
    let Filter {
        caps: ex_caps,
        arches: ex_arches,
        min_kernel: ex_kernel,
    } = &rule.excludes;
    if ex_arches.iter().any(|a| a == host.go_arch) || ex_caps.iter().any(has) {
        return false;
    }
    if let Some(min) = ex_kernel
        && host.kernel.is_some_and(|k| k >= *min)
    {
        return false;
    }
    let inc = &rule.includes;
    if !inc.arches.is_empty() && !inc.arches.iter().any(|a| a == host.go_arch) {
        return false;
    }
    if !inc.caps.iter().all(has) {
        return false;
    }
    // An unknown kernel version satisfies no minKernel.
    if let Some(min) = inc.min_kernel
        && host.kernel.is_none_or(|k| k < min)
    {
        return false;
    }
    true
}
