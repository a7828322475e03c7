//! The container process's uid, gid and supplementary groups, from the security context or the
//! image's `User`, resolved against the image's /etc/passwd and /etc/group (as containerd's
//! `WithUser`, `WithUserID`, `WithAdditionalGIDs` and `WithSupplementalGroups` do).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::rootfs::read_in_root;
use crate::{Security, SpecError, SupplementalGroupsPolicy};

/// Who the container's process runs as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// The primary gid first, then the /etc/group memberships, then the CRI supplemental groups,
    /// without duplicates (containerd's order). Goes into `process.user.additionalGids`.
    pub additional_gids: Vec<u32>,
    /// The passwd name of `uid`, if the image has one. Not put in the OCI spec (Linux runtimes
    /// use only the ids); kept for status and logs.
    pub username: Option<String>,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolves the user. `image_user` is the image config's `User`; `image_name` is only used in
/// error messages.
pub(crate) fn resolve(
    rootfs: &Path,
    security: &Security,
    image_user: &str,
    image_name: &str,
) -> Result<ResolvedUser, SpecError> {
    // CRI: "run_as_group should only be specified when run_as_user or run_as_username is
    // specified; otherwise, the runtime MUST error", and only one of those two at a time.
    if security.run_as_group.is_some()
        && security.run_as_user.is_none()
        && security.run_as_username.is_empty()
    {
        return Err(SpecError::InvalidRunAs(
            "run_as_group is set without run_as_user or run_as_username",
        ));
    }
    if security.run_as_user.is_some() && !security.run_as_username.is_empty() {
        return Err(SpecError::InvalidRunAs(
            "run_as_user and run_as_username are both set; give one of them",
        ));
    }
    let passwd = parse_passwd(&read_in_root(rootfs, "/etc/passwd")?.unwrap_or_default());
    let groups = parse_group(&read_in_root(rootfs, "/etc/group")?.unwrap_or_default());

    let user_not_found = |name: &str| SpecError::UnknownUser {
        name: name.to_string(),
        image: image_name.to_string(),
    };
    let by_uid = |uid: u32| passwd.iter().find(|p| p.uid == uid);
    let by_name = |name: &str| passwd.iter().find(|p| p.name == name);

    // (uid, passwd entry if any, gid given with the user)
    let (uid, entry, spec_gid) = if let Some(uid) = security.run_as_user {
        let uid = to_id(uid, "run_as_user")?;
        (uid, by_uid(uid), None)
    } else if !security.run_as_username.is_empty() {
        let name = security.run_as_username.as_str();
        let entry = by_name(name).ok_or_else(|| user_not_found(name))?;
        (entry.uid, Some(entry), None)
    } else {
        let (user, group) = match image_user.split_once(':') {
            Some((u, g)) => (u, g),
            None => (image_user, ""),
        };
        let (uid, entry) = if user.is_empty() {
            (0, by_uid(0))
        } else if let Ok(uid) = user.parse::<u32>() {
            (uid, by_uid(uid))
        } else {
            let entry = by_name(user).ok_or_else(|| user_not_found(user))?;
            (entry.uid, Some(entry))
        };
        let gid =
            if group.is_empty() {
                None
            } else if let Ok(gid) = group.parse::<u32>() {
                Some(gid)
            } else {
                let g = groups.iter().find(|g| g.name == group).ok_or_else(|| {
                    SpecError::UnknownGroup {
                        name: group.to_string(),
                        image: image_name.to_string(),
                    }
                })?;
                Some(g.gid)
            };
        (uid, entry, gid)
    };

    let gid = match security.run_as_group {
        Some(g) => to_id(g, "run_as_group")?,
        None => spec_gid.or(entry.map(|e| e.gid)).unwrap_or(0),
    };
    let username = entry.map(|e| e.name.clone());

    let mut additional_gids = vec![gid];
    let strict = security.supplemental_groups_policy == SupplementalGroupsPolicy::Strict;
    if let (Some(name), false) = (&username, strict) {
        // Only supplementary groups: a group named like the user is its primary group, whether or
        // not it lists the user (containerd skips it too).
        for g in groups
            .iter()
            .filter(|g| &g.name != name && g.members.iter().any(|m| m == name))
        {
            push_unique(&mut additional_gids, g.gid);
        }
    }
    for &g in &security.supplemental_groups {
        push_unique(&mut additional_gids, to_id(g, "supplemental_groups")?);
    }

    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        username,
    })
}

fn push_unique(v: &mut Vec<u32>, id: u32) {
    if !v.contains(&id) {
        v.push(id);
    }
}

fn to_id(id: i64, what: &'static str) -> Result<u32, SpecError> {
    u32::try_from(id).map_err(|_| SpecError::InvalidId { what, id })
}

/// `name:password:uid:gid:gecos:home:shell`; malformed lines (and NIS `+`/`-` entries) skipped.
fn parse_passwd(content: &str) -> Vec<PasswdEntry> {
    content
        .lines()
        .filter_map(|line| {
            let mut f = line.trim_end_matches('\r').split(':');
            let name = f.next()?;
            if name.is_empty() || name.starts_with(['#', '+', '-']) {
                return None;
            }
            let _password = f.next()?;
            let uid = f.next()?.trim().parse().ok()?;
            let gid = f.next()?.trim().parse().ok()?;
            Some(PasswdEntry {
                name: name.to_string(),
                uid,
                gid,
            })
        })
        .collect()
}

/// `name:password:gid:member,member`.
fn parse_group(content: &str) -> Vec<GroupEntry> {
    content
        .lines()
        .filter_map(|line| {
            let mut f = line.trim_end_matches('\r').split(':');
            let name = f.next()?;
            if name.is_empty() || name.starts_with(['#', '+', '-']) {
                return None;
            }
            let _password = f.next()?;
            let gid = f.next()?.trim().parse().ok()?;
            let members = f
                .next()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect();
            Some(GroupEntry {
                name: name.to_string(),
                gid,
                members,
            })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs;

    pub(crate) const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        berth:x:1000:1000:berth:/home/berth:/bin/sh\n\
        nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    pub(crate) const GROUP: &str =
        "root:x:0:\nberth:x:1000:\nextra:x:2000:berth\nnogroup:x:65534:\n";

    /// A rootfs with the test image's /etc/passwd and /etc/group.
    pub(crate) fn fake_rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        fs::write(dir.path().join("etc/group"), GROUP).unwrap();
        dir
    }

    fn image_user(user: &str) -> Result<ResolvedUser, SpecError> {
        let root = fake_rootfs();
        resolve(root.path(), &Security::default(), user, "img")
    }

    fn ids(u: &ResolvedUser) -> (u32, u32, Vec<u32>) {
        (u.uid, u.gid, u.additional_gids.clone())
    }

    #[test]
    fn image_user_forms() {
        let u = image_user("berth").unwrap();
        assert_eq!(ids(&u), (1000, 1000, vec![1000, 2000]));
        assert_eq!(u.username.as_deref(), Some("berth"));
        // Numeric uid known to passwd: its gid and groups.
        assert_eq!(
            ids(&image_user("1000").unwrap()),
            (1000, 1000, vec![1000, 2000])
        );
        // Unknown uid: gid 0, no name.
        let u = image_user("4242").unwrap();
        assert_eq!(ids(&u), (4242, 0, vec![0]));
        assert_eq!(u.username, None);
        assert_eq!(ids(&image_user("4242:77").unwrap()), (4242, 77, vec![77]));
        assert_eq!(
            ids(&image_user("berth:nogroup").unwrap()),
            (1000, 65534, vec![65534, 2000])
        );
        assert_eq!(
            ids(&image_user("1000:extra").unwrap()),
            (1000, 2000, vec![2000])
        );
        assert_eq!(ids(&image_user("nobody:5").unwrap()), (65534, 5, vec![5]));
        let root = image_user("").unwrap();
        assert_eq!(ids(&root), (0, 0, vec![0]));
        assert_eq!(root.username.as_deref(), Some("root"));
    }

    #[test]
    fn unknown_names_are_invalid_arguments() {
        let err = image_user("ghost").unwrap_err();
        assert!(matches!(err, SpecError::UnknownUser { .. }));
        let msg = err.to_string();
        assert!(msg.contains("\"ghost\"") && msg.contains("/etc/passwd") && msg.contains("img"));
        let err = image_user("berth:ghosts").unwrap_err();
        assert!(matches!(err, SpecError::UnknownGroup { .. }));
        assert!(err.to_string().contains("/etc/group"));
    }

    #[test]
    fn security_context_wins_over_the_image() {
        let root = fake_rootfs();
        let sec = Security {
            run_as_user: Some(1000),
            ..Default::default()
        };
        let u = resolve(root.path(), &sec, "nobody", "img").unwrap();
        assert_eq!(ids(&u), (1000, 1000, vec![1000, 2000]));

        let sec = Security {
            run_as_username: "nobody".into(),
            run_as_group: Some(3),
            supplemental_groups: vec![3, 2000, 4000],
            ..Default::default()
        };
        let u = resolve(root.path(), &sec, "berth", "img").unwrap();
        assert_eq!(ids(&u), (65534, 3, vec![3, 2000, 4000]));

        // run_as_group needs a user from the request; both user fields at once are refused.
        let sec = Security {
            run_as_group: Some(9),
            ..Default::default()
        };
        let err = resolve(root.path(), &sec, "berth", "img").unwrap_err();
        assert!(
            matches!(err, SpecError::InvalidRunAs(_)) && err.to_string().contains("run_as_group")
        );
        let sec = Security {
            run_as_user: Some(0),
            run_as_username: "berth".into(),
            ..Default::default()
        };
        assert!(matches!(
            resolve(root.path(), &sec, "", "img"),
            Err(SpecError::InvalidRunAs(_))
        ));

        let sec = Security {
            run_as_username: "ghost".into(),
            ..Default::default()
        };
        assert!(matches!(
            resolve(root.path(), &sec, "", "img"),
            Err(SpecError::UnknownUser { .. })
        ));
        let sec = Security {
            run_as_user: Some(-1),
            ..Default::default()
        };
        assert!(matches!(
            resolve(root.path(), &sec, "", "img"),
            Err(SpecError::InvalidId { .. })
        ));
    }

    #[test]
    fn strict_policy_ignores_etc_group() {
        let root = fake_rootfs();
        let sec = Security {
            run_as_user: Some(1000),
            supplemental_groups: vec![4000],
            supplemental_groups_policy: SupplementalGroupsPolicy::Strict,
            ..Default::default()
        };
        let u = resolve(root.path(), &sec, "", "img").unwrap();
        // Merge would give [1000, 2000, 4000]: "extra" (2000) lists berth in /etc/group.
        assert_eq!(ids(&u), (1000, 1000, vec![1000, 4000]));
    }

    #[test]
    fn passwd_through_an_absolute_symlink_is_read_inside_the_rootfs() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::create_dir_all(r.join("data")).unwrap();
        fs::write(r.join("data/passwd"), "app:x:7:8::/:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("/data/passwd", r.join("etc/passwd")).unwrap();
        let u = resolve(r, &Security::default(), "app", "img").unwrap();
        assert_eq!(ids(&u), (7, 8, vec![8]));
        // No /etc at all: numeric users still work, names don't.
        let empty = tempfile::tempdir().unwrap();
        let u = resolve(empty.path(), &Security::default(), "5:6", "img").unwrap();
        assert_eq!(ids(&u), (5, 6, vec![6]));
        assert!(resolve(empty.path(), &Security::default(), "root", "img").is_err());
    }

    #[test]
    fn parses_odd_lines() {
        let p = parse_passwd("# c\n\n+nis\nbad:x:zz:0\nok:x:1:2\n");
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].uid, p[0].gid), (1, 2));
        let g = parse_group("g:x:5: a , b\nh:x:6\n");
        assert_eq!(g[0].members, vec!["a", "b"]);
        assert!(g[1].members.is_empty());
    }
}
