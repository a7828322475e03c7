//! What crictl's list verbs share: a name regex, the newest N, and IDs shortened unless told not.

use anyhow::Context;
use clap::Args;
use regex::Regex;

#[derive(Debug, Clone, Default, Args)]
pub struct SelectArgs {
    /// Only those whose name matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub name: Option<String>,
    /// Only the N most recently created, in any state (0: all).
    #[arg(long, short = 'n', value_name = "N", default_value_t = 0)]
    pub last: usize,
    /// Only the most recently created one, in any state.
    #[arg(long, short = 'l')]
    pub latest: bool,
    /// Show IDs in full.
    #[arg(long)]
    pub no_trunc: bool,
}

impl SelectArgs {
    /// Whether the state filter should be dropped: crictl's --last and --latest include all states.
    pub fn any_state(&self) -> bool {
        self.latest || self.last > 0
    }

    pub fn name_regex(&self) -> anyhow::Result<Option<Regex>> {
        self.name
            .as_deref()
            .map(|r| Regex::new(r).with_context(|| format!("--name {r:?}")))
            .transpose()
    }

    /// Newest first, then cut to --latest or --last.
    pub fn newest<T>(&self, items: &mut Vec<T>, created: impl Fn(&T) -> i64) {
        items.sort_by_key(|i| std::cmp::Reverse(created(i)));
        let keep = if self.latest { 1 } else { self.last };
        if keep > 0 {
            items.truncate(keep);
        }
    }

    /// An ID as the table shows it.
    pub fn id(&self, id: &str) -> String {
        if self.no_trunc {
            id.to_string()
        } else {
            crate::containers::short(id)
        }
    }
}

/// Whether `id` is `wanted` or starts with it (crictl and docker take unique prefixes).
pub fn id_matches(id: &str, wanted: &str) -> bool {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    let wanted = wanted.strip_prefix("sha256:").unwrap_or(wanted);
    !wanted.is_empty() && id.starts_with(wanted)
}

/// A nanosecond timestamp as a string, as CRI's JSON (proto3) writes int64: readers such as jq
/// keep numbers as doubles, which can't hold it exactly.
pub fn nanos(ns: i64) -> serde_json::Value {
    serde_json::Value::from(ns.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_then_cut() {
        let sel = |latest, last| SelectArgs {
            latest,
            last,
            ..Default::default()
        };
        let mut v = vec![1, 3, 2];
        sel(false, 0).newest(&mut v, |i| *i);
        assert_eq!(v, [3, 2, 1]);
        sel(false, 2).newest(&mut v, |i| *i);
        assert_eq!(v, [3, 2]);
        sel(true, 2).newest(&mut v, |i| *i);
        assert_eq!(v, [3]);
        assert!(sel(true, 0).any_state() && sel(false, 1).any_state());
        assert!(!sel(false, 0).any_state());
        assert!(id_matches("sha256:abcdef", "abc") && id_matches("abcdef", "sha256:abcdef"));
        assert!(!id_matches("abcdef", "") && !id_matches("abcdef", "b"));
        let bad = SelectArgs {
            name: Some("(".into()),
            ..Default::default()
        };
        assert!(bad.name_regex().is_err());
    }
}
