//! Fewer argument rules for the same decisions: the rules of one syscall that test one argument
//! against a small set of values (the built-in profile's 26 `socket` address-family rules and 5
//! `personality` rules) are rewritten as the fewest `SCMP_CMP_MASKED_EQ` tests (`arg & mask ==
//! value`) this code finds whose union is exactly the same set of 64-bit values.
//!
//! Why: libseccomp 2.5 (what runc 1.1 uses) spends time quadratic in the size of the filter to
//! build the BPF program, and argument tests are the most expensive part of it per rule; see
//! README.md ("What the filter costs"). The set of allowed values, and so every decision, is
//! unchanged: a value matches one of the new rules exactly when it matched one of the old ones,
//! for all 2^64 values (and so also for the low 32 bits that 32-bit ABIs compare).
//!
//! Each value set is minimised with Quine–McCluskey: every value is a cube (value, no free bit);
//! two cubes with the same free bits that differ in one more bit merge into one with that bit
//! free; the cubes that merge no further are the candidates, and a cover of the set is picked
//! from them (first those that alone cover some value, then greedily). A cube (v, free) is the
//! set {x : x & !free == v}, which is `MASKED_EQ` with mask !free and value v.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use oci_spec::runtime::{
    LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompOperator, LinuxSyscall,
};

/// A set larger than this is left as written (the built-in profile's largest has 37 values).
const MAX_VALUES: u64 = 1024;

/// The values of argument `index` that satisfy `arg`, when they are few: `EQ`, `LT`, `LE`, or
/// `MASKED_EQ` with at most 10 bits outside the mask. None for any other test.
pub(super) fn values(arg: &LinuxSeccompArg) -> Option<BTreeSet<u64>> {
    let v = arg.value();
    let set: BTreeSet<u64> = match arg.op() {
        LinuxSeccompOperator::ScmpCmpEq => [v].into(),
        LinuxSeccompOperator::ScmpCmpLt if v <= MAX_VALUES => (0..v).collect(),
        LinuxSeccompOperator::ScmpCmpLe if v < MAX_VALUES => (0..=v).collect(),
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            // OCI: `value` is the mask, `valueTwo` the value compared with.
            let (mask, want) = (v, arg.value_two().unwrap_or(0));
            let free = !mask;
            if want & free != 0 || free.count_ones() > 10 {
                // Never true, or too many values: not worth the bookkeeping.
                return None;
            }
            subsets(free).map(|bits| want | bits).collect()
        }
        _ => return None,
    };
    Some(set)
}

/// Every subset of the bits of `mask`.
fn subsets(mask: u64) -> impl Iterator<Item = u64> {
    // Standard enumeration of submasks, from mask down to 0.
    let mut next = Some(mask);
    std::iter::from_fn(move || {
        let cur = next?;
        next = (cur != 0).then(|| (cur - 1) & mask);
        Some(cur)
    })
}

/// The tests on argument `index` whose union is exactly `set`: as few as this cover finds, in
/// ascending order of value. A single value is an `EQ` test, anything else `MASKED_EQ`. None if
/// oci-spec's builder refuses a test (it does not: index, value and op are always set).
pub(super) fn tests_for(index: usize, set: &BTreeSet<u64>) -> Option<Vec<LinuxSeccompArg>> {
    cover_cached(set)
        .into_iter()
        .map(|(value, free)| {
            let b = LinuxSeccompArgBuilder::default().index(index);
            let b = if free == 0 {
                b.value(value).op(LinuxSeccompOperator::ScmpCmpEq)
            } else {
                b.value(!free)
                    .value_two(value)
                    .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            };
            b.build().ok()
        })
        .collect()
}

/// A cube: the values x with x & !free == value (value has no bit in free).
type Cube = (u64, u64);

fn contains((value, free): Cube, x: u64) -> bool {
    x & !free == value
}

/// [`cover`], remembered: it costs about 0.3 ms for the socket families, and the built-in
/// profile asks for the same two sets for every container. At most [`CACHED`] sets are kept.
fn cover_cached(set: &BTreeSet<u64>) -> Vec<Cube> {
    static CACHE: Mutex<Vec<(BTreeSet<u64>, Vec<Cube>)>> = Mutex::new(Vec::new());
    let lock = || {
        CACHE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    if let Some((_, cubes)) = lock().iter().find(|(s, _)| s == set) {
        return cubes.clone();
    }
    let cubes = cover(set);
    let mut cache = lock();
    if cache.len() >= CACHED {
        cache.remove(0);
    }
    cache.push((set.clone(), cubes.clone()));
    cubes
}

/// How many value sets [`cover_cached`] keeps.
const CACHED: usize = 16;

/// Cubes whose union is exactly `set` (each lies inside it), few of them.
fn cover(set: &BTreeSet<u64>) -> Vec<Cube> {
    let primes = prime_cubes(set);
    let covering = |x: u64| primes.iter().filter(move |&&c| contains(c, x));
    let mut chosen: BTreeSet<Cube> = BTreeSet::new();
    // Essential cubes: the only one covering some value.
    for &x in set {
        let mut it = covering(x);
        if let (Some(&only), None) = (it.next(), it.next()) {
            chosen.insert(only);
        }
    }
    let mut left: BTreeSet<u64> = set
        .iter()
        .copied()
        .filter(|&x| !chosen.iter().any(|&c| contains(c, x)))
        .collect();
    // Then the cube covering most of what is left (the first such, for a stable result).
    while let Some(&first) = left.iter().next() {
        let best = primes
            .iter()
            .copied()
            .filter(|&c| contains(c, first))
            .max_by_key(|&c| {
                (
                    left.iter().filter(|&&x| contains(c, x)).count(),
                    std::cmp::Reverse(c),
                )
            })
            // Every value lies in some prime cube; the value alone is a cube inside the set too.
            .unwrap_or((first, 0));
        chosen.insert(best);
        left.retain(|&x| !contains(best, x));
    }
    chosen.into_iter().collect()
}

/// Quine–McCluskey's prime implicants of `set`: the cubes inside it that are in no larger cube
/// inside it.
fn prime_cubes(set: &BTreeSet<u64>) -> Vec<Cube> {
    let mut primes = Vec::new();
    let mut level: BTreeSet<Cube> = set.iter().map(|&x| (x, 0)).collect();
    while !level.is_empty() {
        let mut merged: BTreeSet<Cube> = BTreeSet::new();
        let mut next: BTreeSet<Cube> = BTreeSet::new();
        for &(value, free) in &level {
            for bit in (0..64).map(|b| 1u64 << b) {
                if (value | free) & bit != 0 {
                    continue;
                }
                let other = (value | bit, free);
                if level.contains(&other) {
                    next.insert((value, free | bit));
                    merged.insert((value, free));
                    merged.insert(other);
                }
            }
        }
        primes.extend(level.difference(&merged).copied());
        level = next;
    }
    primes
}

/// Rewrites the rules with the same syscall names, action and errno that each test only
/// argument `index` against a small value set: their union becomes [`tests_for`], one rule per
/// test, at the place of the first of them. Only done when that makes fewer rules.
pub(super) fn compact(rules: Vec<LinuxSyscall>) -> Vec<LinuxSyscall> {
    // Candidate buckets: the positions of their rules and the union of their value sets.
    let mut buckets: Vec<(Vec<usize>, BTreeSet<u64>)> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let Some([arg]) = r.args().as_deref() else {
            continue;
        };
        let Some(set) = values(arg) else { continue };
        let same = |(at, _): &(Vec<usize>, BTreeSet<u64>)| {
            let first: &LinuxSyscall = &rules[at[0]];
            first.names() == r.names()
                && first.action() == r.action()
                && first.errno_ret() == r.errno_ret()
                && first
                    .args()
                    .as_deref()
                    .is_some_and(|a| a[0].index() == arg.index())
        };
        match buckets.iter_mut().find(|b| same(b)) {
            Some((at, union)) => {
                at.push(i);
                union.extend(set);
            }
            None => buckets.push((vec![i], set)),
        }
    }
    let mut replace: BTreeMap<usize, Vec<LinuxSyscall>> = BTreeMap::new();
    let mut drop: BTreeSet<usize> = BTreeSet::new();
    for (at, union) in &buckets {
        if at.len() < 2 || union.len() as u64 > MAX_VALUES {
            continue;
        }
        let template = &rules[at[0]];
        // A candidate tests one argument (values() matched it above).
        let Some(index) = template
            .args()
            .as_deref()
            .and_then(|args| args.first())
            .map(LinuxSeccompArg::index)
        else {
            continue;
        };
        // Without tests the rules stay as written.
        let Some(tests) = tests_for(index, union) else {
            continue;
        };
        if tests.len() >= at.len() {
            continue;
        }
        let new = tests
            .into_iter()
            .map(|t| {
                let mut r = template.clone();
                r.set_args(Some(vec![t]));
                r
            })
            .collect();
        replace.insert(at[0], new);
        drop.extend(at[1..].iter().copied());
    }
    let mut out = Vec::with_capacity(rules.len());
    for (i, r) in rules.into_iter().enumerate() {
        if let Some(new) = replace.remove(&i) {
            out.extend(new);
        } else if !drop.contains(&i) {
            out.push(r);
        }
    }
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn arg(op: LinuxSeccompOperator, value: u64, two: Option<u64>) -> LinuxSeccompArg {
        let b = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(value)
            .op(op);
        match two {
            Some(t) => b.value_two(t).build().unwrap(),
            None => b.build().unwrap(),
        }
    }

    /// What the kernel filter decides for `x` (libseccomp's 64-bit comparisons).
    pub(crate) fn holds(a: &LinuxSeccompArg, x: u64) -> bool {
        let v = a.value();
        match a.op() {
            LinuxSeccompOperator::ScmpCmpEq => x == v,
            LinuxSeccompOperator::ScmpCmpNe => x != v,
            LinuxSeccompOperator::ScmpCmpLt => x < v,
            LinuxSeccompOperator::ScmpCmpLe => x <= v,
            LinuxSeccompOperator::ScmpCmpGt => x > v,
            LinuxSeccompOperator::ScmpCmpGe => x >= v,
            LinuxSeccompOperator::ScmpCmpMaskedEq => x & v == a.value_two().unwrap_or(0),
        }
    }

    /// Values around every bit boundary, with and without high bits.
    pub(crate) fn probe_values() -> Vec<u64> {
        let mut xs: Vec<u64> = (0..=4096).collect();
        for b in 0..64 {
            let p = 1u64 << b;
            xs.extend([p, p - 1, p + 1, !p, p | 13, p | 0x20008]);
        }
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..4096 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            xs.extend([
                seed,
                seed & 0xffff_ffff,
                seed & 0xff,
                (seed & 0x3f) | (1 << 32),
            ]);
        }
        xs
    }

    fn same_set(set: &BTreeSet<u64>) {
        let tests = tests_for(0, set).unwrap();
        for x in probe_values().into_iter().chain(set.iter().copied()) {
            assert_eq!(
                tests.iter().any(|t| holds(t, x)),
                set.contains(&x),
                "{x:#x} for {set:?}: {tests:?}"
            );
        }
    }

    #[test]
    fn the_socket_families_take_eleven_tests() {
        let set: BTreeSet<u64> = (0..12)
            .chain([
                13, 14, 15, 16, 17, 18, 21, 22, 24, 26, 27, 28, 29, 30, 31, 32, 33, 35, 36, 39, 41,
                42, 43, 44, 45,
            ])
            .collect();
        assert_eq!(tests_for(0, &set).unwrap().len(), 11);
        same_set(&set);
    }

    #[test]
    fn personality_takes_two() {
        let set: BTreeSet<u64> = [0, 8, 0x20000, 0x20008, 0xffff_ffff].into();
        let tests = tests_for(0, &set).unwrap();
        assert_eq!(tests.len(), 2, "{tests:?}");
        same_set(&set);
    }

    #[test]
    fn random_sets_keep_their_values() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..300 {
            let n = 1 + next() % 40;
            let spread = [16, 64, 300, 1 << 20, u64::MAX][round % 5];
            let set: BTreeSet<u64> = (0..n).map(|_| next() % spread).collect();
            same_set(&set);
        }
        same_set(&[0].into());
        same_set(&[u64::MAX].into());
        same_set(&(0..256).collect());
    }

    #[test]
    fn value_sets_of_each_test() {
        use LinuxSeccompOperator::*;
        assert_eq!(values(&arg(ScmpCmpEq, 7, None)), Some([7].into()));
        assert_eq!(values(&arg(ScmpCmpLt, 3, None)), Some([0, 1, 2].into()));
        assert_eq!(values(&arg(ScmpCmpLe, 2, None)), Some([0, 1, 2].into()));
        assert_eq!(values(&arg(ScmpCmpLt, 0, None)), Some(BTreeSet::new()));
        assert_eq!(
            values(&arg(ScmpCmpMaskedEq, !3, Some(8))),
            Some([8, 9, 10, 11].into())
        );
        // Never true, too many values, or not a small set at all.
        assert_eq!(values(&arg(ScmpCmpMaskedEq, !3, Some(9))), None);
        assert_eq!(values(&arg(ScmpCmpMaskedEq, 0x7E02_0000, None)), None);
        assert_eq!(values(&arg(ScmpCmpLt, 1 << 20, None)), None);
        assert_eq!(values(&arg(ScmpCmpNe, 1, None)), None);
        assert_eq!(values(&arg(ScmpCmpGe, 1, None)), None);
        for a in [
            arg(ScmpCmpEq, 7, None),
            arg(ScmpCmpLt, 12, None),
            arg(ScmpCmpLe, 12, None),
            arg(ScmpCmpMaskedEq, !0x20008, Some(0)),
        ] {
            let set = values(&a).unwrap();
            for x in probe_values() {
                assert_eq!(set.contains(&x), holds(&a, x), "{a:?} {x:#x}");
            }
        }
    }
}
