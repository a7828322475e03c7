//! `linux.seccomp`: the container's syscall filter, from its [`SeccompProfile`].
//!
//! - `Unconfined`: no filter.
//! - `RuntimeDefault`: Berth's built-in profile, `default.json` next to this file, in Docker's
//!   profile format. Its syscall lists and rules are those of moby's default profile,
//!   `seccomp/default.json` of github.com/moby/profiles at commit
//!   `02e898b137aed1024e232d59bcb05e6179b72177` (the successor of moby/moby's
//!   `profiles/seccomp/default.json`; Apache-2.0, The Moby Authors), which is also the coverage
//!   of containerd's `contrib/seccomp` default: everything else fails with EPERM, `clone`
//!   without namespace flags and `clone3` failing with ENOSYS unless CAP_SYS_ADMIN, and the
//!   privileged syscalls allowed only when their capability is in the container's bounding set.
//!   See `README.md` here for how to update it.
//! - `Localhost(path)`: a profile file on the node, in the OCI `linux.seccomp` format or in
//!   Docker's format.
//!
//! Docker's conditions (`includes` / `excludes` on capabilities, architectures and `minKernel`)
//! are evaluated here for the container, so runc gets a plain OCI filter. The built-in profile is
//! parsed once per process; per container only the conditions are evaluated. It is also rendered
//! in the form runc compiles fastest, with the same decisions (`SCMP_ARCH_X32` left out on kernels
//! without x32, argument rules compacted): README.md, "What the filter costs".

mod compact;
// uname(2) and a raw x32 getpid probe: what the host kernel can filter.
#[allow(unsafe_code)]
mod host;
mod profile;
mod render;

use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

use oci_spec::runtime::{Capabilities, LinuxSeccomp};

use crate::{SeccompProfile, SpecError};
use profile::Profile;
use render::Shape;

/// Larger profile files are refused: a real profile is a few tens of KiB, and the file is read
/// for every container that names it.
const MAX_PROFILE_BYTES: u64 = 4 << 20;

/// The built-in profile (see the module doc).
const DEFAULT_PROFILE: &str = include_str!("default.json");

/// The filter for a container whose bounding capability set is `bounding_caps`; None for no
/// filter. Profile problems (missing or unreadable file, bad JSON, unknown names) are
/// [`SpecError::InvalidSeccompProfile`] or [`SpecError::UnreadableSeccompProfile`]. Privileged
/// containers are the caller's business (they run unconfined).
pub(crate) fn linux_seccomp(
    profile: &SeccompProfile,
    bounding_caps: &Capabilities,
) -> Result<Option<LinuxSeccomp>, SpecError> {
    let host = host::current();
    match profile {
        SeccompProfile::Unconfined => Ok(None),
        SeccompProfile::RuntimeDefault => {
            render::render(default_profile()?, bounding_caps, host, Shape::Fast).map(Some)
        }
        SeccompProfile::Localhost(path) => {
            let profile = load(Path::new(path))?;
            render::render(&profile, bounding_caps, host, Shape::AsWritten).map(Some)
        }
    }
}

/// The built-in profile, parsed on first use.
fn default_profile() -> Result<&'static Profile, SpecError> {
    static DEFAULT: OnceLock<Result<Profile, String>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| profile::parse(DEFAULT_PROFILE.as_bytes()))
        .as_ref()
        // A broken built-in profile is Berth's bug, not the request's; a unit test parses it.
        .map_err(|e| SpecError::DefaultSeccompProfile(e.clone()))
}

/// Reads and validates a Localhost profile. Every failure is the request's (it names the file).
fn load(path: &Path) -> Result<Profile, SpecError> {
    let invalid = |reason: String| SpecError::InvalidSeccompProfile {
        path: path.to_path_buf(),
        reason,
    };
    let unreadable = |op: &'static str| {
        move |source: std::io::Error| SpecError::UnreadableSeccompProfile {
            path: path.to_path_buf(),
            op,
            source,
        }
    };
    if !path.is_absolute() {
        return Err(invalid("the path is not absolute".into()));
    }
    let file = fs::File::open(path).map_err(unreadable("open"))?;
    let meta = file.metadata().map_err(unreadable("stat"))?;
    if !meta.is_file() {
        return Err(invalid("not a regular file".into()));
    }
    if meta.len() > MAX_PROFILE_BYTES {
        return Err(invalid(format!(
            "{} bytes, more than the {MAX_PROFILE_BYTES} allowed",
            meta.len()
        )));
    }
    // Bounded read too: the file may grow after the stat.
    // Only a capacity hint (the length is checked above).
    let mut data = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_PROFILE_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(unreadable("read"))?;
    if data.len() as u64 > MAX_PROFILE_BYTES {
        return Err(invalid(format!(
            "more than the {MAX_PROFILE_BYTES} bytes allowed"
        )));
    }
    profile::parse(&data).map_err(invalid)
}

#[cfg(test)]
mod localhost_tests;
#[cfg(test)]
mod tests;
