//! Pressure stall information (`cpu.pressure`, `memory.pressure`, `io.pressure`), CRI's PSI
//! fields (cri-api 1.34+). They are cgroup v2 core files: present in every cgroup2 cgroup when
//! the kernel has PSI, whichever controllers are enabled. So a hybrid host has them too, in its
//! unified hierarchy, where runc places each container beside its v1 cgroups; the kernel
//! accounts pressure by that cgroup2 membership.

use crate::CgroupError;

use super::Dir;

/// One line of a pressure file. The averages are in hundredths of a percent, as the kernel
/// prints them to two decimals (kept integral so the stats stay `Eq`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PsiData {
    /// Total stall time, microseconds.
    pub total_us: u64,
    pub avg10_centi: u32,
    pub avg60_centi: u32,
    pub avg300_centi: u32,
}

/// `some`: at least one task stalled; `full`: all non-idle tasks stalled (for cpu, only at
/// the cgroup level since 5.13; zero where the kernel prints none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PsiStats {
    pub some: PsiData,
    pub full: PsiData,
}

/// The three resources; each `None` where the kernel has no such file for the cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    pub cpu: Option<PsiStats>,
    pub memory: Option<PsiStats>,
    pub io: Option<PsiStats>,
}

/// Reads the three files; `None` when none exists (a kernel without PSI, or `psi=0`).
pub(super) fn read(dir: &Dir) -> Result<Option<Pressure>, CgroupError> {
    let pressure = Pressure {
        cpu: file(dir, "cpu.pressure")?,
        memory: file(dir, "memory.pressure")?,
        io: file(dir, "io.pressure")?,
    };
    let any = pressure.cpu.is_some() || pressure.memory.is_some() || pressure.io.is_some();
    Ok(any.then_some(pressure))
}

fn file(dir: &Dir, name: &str) -> Result<Option<PsiStats>, CgroupError> {
    let Some(keyed) = dir.keyed_opt(name)? else {
        return Ok(None);
    };
    parse(&keyed.text)
        .map(Some)
        .map_err(|reason| CgroupError::StatsFile {
            file: keyed.file.clone(),
            reason,
        })
}

/// `some avg10=0.12 avg60=0.05 avg300=0.00 total=1234` and the same for `full`.
pub(super) fn parse(text: &str) -> Result<PsiStats, String> {
    let mut stats = PsiStats::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let target = match fields.next() {
            Some("some") => &mut stats.some,
            Some("full") => &mut stats.full,
            other => return Err(format!("unexpected line start {other:?}")),
        };
        for field in fields {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| format!("expected key=value, found {field:?}"))?;
            match key {
                "total" => {
                    target.total_us = value.parse().map_err(|e| format!("total {value:?}: {e}"))?;
                }
                "avg10" => target.avg10_centi = centi(value)?,
                "avg60" => target.avg60_centi = centi(value)?,
                "avg300" => target.avg300_centi = centi(value)?,
                _ => {}
            }
        }
    }
    Ok(stats)
}

/// `12.34` → 1234 (the kernel always prints two decimals).
fn centi(value: &str) -> Result<u32, String> {
    let bad = || format!("expected a percentage, found {value:?}");
    let (whole, frac) = value.split_once('.').unwrap_or((value, "0"));
    let whole: u32 = whole.parse().map_err(|_| bad())?;
    let frac = format!("{frac:0<2}");
    let frac: u32 = frac.get(..2).ok_or_else(bad)?.parse().map_err(|_| bad())?;
    whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_pressure_files() {
        let text = "some avg10=5.25 avg60=20.88 avg300=32.22 total=2889894838\n\
                    full avg10=0.00 avg60=0.10 avg300=0.00 total=17\n";
        let psi = parse(text).unwrap();
        assert_eq!(
            psi.some,
            PsiData {
                total_us: 2_889_894_838,
                avg10_centi: 525,
                avg60_centi: 2088,
                avg300_centi: 3222
            }
        );
        assert_eq!(psi.full.total_us, 17);
        assert_eq!(psi.full.avg60_centi, 10);
        // Older kernels print no `full` line for cpu.
        let cpu = parse("some avg10=100.00 avg60=0.5 avg300=0 total=1\n").unwrap();
        assert_eq!(cpu.some.avg10_centi, 10_000);
        assert_eq!(cpu.some.avg60_centi, 50);
        assert_eq!(cpu.full, PsiData::default());
        assert!(parse("partial avg10=1.00\n").is_err());
        assert!(parse("some avg10=x total=1\n").is_err());
        assert!(parse("some total=-1\n").is_err());
    }

    #[test]
    fn reads_this_hosts_pressure_where_it_has_psi() {
        let Some(root) = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .iter()
            .map(std::path::Path::new)
            .find(|p| p.join("cpu.pressure").is_file())
        else {
            return; // A kernel without PSI: nothing to read.
        };
        let pressure = read(&Dir::new(root.to_path_buf())).unwrap().unwrap();
        let cpu = pressure.cpu.unwrap();
        assert!(cpu.some.total_us > 0 || cpu.some.avg300_centi == 0);
    }
}
