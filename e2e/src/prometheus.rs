//! Reading `/metrics` independently of berthd's own code: the text is parsed by the Prometheus
//! Python client's parser (`prometheus_client.parser.text_string_to_metric_families`, Debian's
//! `python3-prometheus-client`, which `hack/install-deps.sh` installs), then checked for what that
//! lenient parser lets through (duplicate families or series, untyped samples, inconsistent
//! histograms). Also a PromQL tokenizer that finds the metric names a query reads.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, bail, ensure};

use crate::Berthd;

/// Debian's interpreter: the package installs into its dist-packages, which a `python3` from
/// pyenv or a venv earlier in PATH would not see.
const PYTHON: &str = "/usr/bin/python3";

/// Parses stdin and prints `[{name, type, help, samples: [{name, labels, value}]}]`. Values are
/// printed with `repr` so that NaN and ±Inf survive JSON.
const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families = []
for f in text_string_to_metric_families(sys.stdin.read()):
    families.append({
        "name": f.name, "type": f.type, "help": f.documentation,
        "samples": [{"name": s.name, "labels": s.labels, "value": repr(float(s.value))}
                    for s in f.samples],
    })
json.dump(families, sys.stdout)
"#;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series name as written (`..._total`, `..._bucket`, ...).
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One metric family. As the Python client names them, a counter family has no `_total` and a
/// histogram family no `_bucket`/`_sum`/`_count`.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    /// `counter`, `gauge`, `histogram` or `summary`.
    pub kind: String,
    pub help: String,
    pub samples: Vec<Sample>,
}

/// A parsed and checked scrape.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub families: Vec<Family>,
}

/// Scrapes berthd's `/metrics` and parses it with [`parse`].
pub fn scrape(berthd: &Berthd) -> anyhow::Result<Scrape> {
    let text = berthd.metrics()?;
    parse(&text).with_context(|| format!("parsing berthd's /metrics:\n{text}"))
}

/// Parses Prometheus text exposition format with the Python client; `Err` if it is not valid.
pub fn parse(text: &str) -> anyhow::Result<Scrape> {
    // The parser merges repeated HELP or TYPE lines of one name into one family.
    let mut declared = BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some(kind @ ("HELP" | "TYPE")), Some(name)) =
            (words.next(), words.next(), words.next())
        {
            ensure!(declared.insert((kind, name)), "{kind} {name} appears twice");
        }
    }
    let mut child = Command::new(PYTHON)
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {PYTHON} (hack/install-deps.sh installs it)"))?;
    let mut stdin = child.stdin.take().context("python's stdin")?;
    let body = text.to_string();
    // Written from a thread: a large scrape must not block on python's full stdout pipe.
    let writer = std::thread::spawn(move || stdin.write_all(body.as_bytes()));
    let out = child.wait_with_output().context("waiting for python")?;
    let written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))?;
    if !out.status.success() {
        bail!(
            "prometheus_client refused the exposition ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    written.context("writing the exposition to python")?;
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("the parser's output is not JSON")?;
    let scrape = Scrape {
        families: families_from_json(&json)?,
    };
    scrape.check()?;
    Ok(scrape)
}

fn families_from_json(json: &serde_json::Value) -> anyhow::Result<Vec<Family>> {
    let str_of = |v: &serde_json::Value, key: &str| -> anyhow::Result<String> {
        v[key]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("no string {key} in {v}"))
    };
    let mut families = Vec::new();
    for f in json.as_array().context("a list of families")? {
        let mut samples = Vec::new();
        for s in f["samples"].as_array().context("a list of samples")? {
            let labels = s["labels"]
                .as_object()
                .with_context(|| format!("labels of {s}"))?
                .iter()
                .map(|(k, v)| Ok((k.clone(), v.as_str().context("a label value")?.to_string())))
                .collect::<anyhow::Result<_>>()?;
            let value = str_of(s, "value")?;
            samples.push(Sample {
                name: str_of(s, "name")?,
                labels,
                value: value
                    .parse()
                    .with_context(|| format!("sample value {value:?}"))?,
            });
        }
        families.push(Family {
            name: str_of(f, "name")?,
            kind: str_of(f, "type")?,
            help: str_of(f, "help")?,
            samples,
        });
    }
    Ok(families)
}

impl Scrape {
    /// What the Python parser accepts but a well-formed exposition must not have.
    fn check(&self) -> anyhow::Result<()> {
        let mut names = BTreeSet::new();
        let mut series = BTreeSet::new();
        for f in &self.families {
            ensure!(names.insert(&f.name), "family {} appears twice", f.name);
            ensure!(
                matches!(
                    f.kind.as_str(),
                    "counter" | "gauge" | "histogram" | "summary"
                ),
                "family {} has type {:?}: samples without a matching TYPE line",
                f.name,
                f.kind
            );
            ensure!(!f.help.is_empty(), "family {} has no HELP", f.name);
            ensure!(!f.samples.is_empty(), "family {} has no samples", f.name);
            for s in &f.samples {
                ensure!(
                    series.insert((&s.name, &s.labels)),
                    "series {}{:?} appears twice",
                    s.name,
                    s.labels
                );
                if f.kind == "counter" {
                    ensure!(s.value >= 0.0, "counter {} is {}", s.name, s.value);
                }
            }
            if f.kind == "histogram" {
                check_histogram(f)?;
            }
        }
        Ok(())
    }

    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.families.iter().flat_map(|f| &f.samples)
    }

    /// The value of the series `name` with exactly these labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    /// Like [`Scrape::value`], but a missing series fails with the series and the scrape's names.
    pub fn expect(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or_else(|| {
            let names: BTreeSet<_> = self.samples().map(|s| s.name.as_str()).collect();
            panic!("no series {name}{labels:?} in the scrape; it has {names:?}")
        })
    }

    /// The sum of the series `name` whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// The family whose series a metric name in a query selects: `<family>_total` of a counter,
    /// `<family>_bucket`, `_sum` or `_count` of a histogram, a gauge's own name. `None` if no
    /// series has that name (a counter's family name alone selects nothing).
    pub fn family_of_metric(&self, metric: &str) -> Option<&Family> {
        self.families
            .iter()
            .find(|f| f.samples.iter().any(|s| s.name == metric))
    }
}

/// Per label set: buckets ascending in `le` with non-decreasing counts, a `+Inf` bucket equal to
/// `_count`, and a `_sum`.
fn check_histogram(f: &Family) -> anyhow::Result<()> {
    let key = |s: &Sample| {
        let mut labels = s.labels.clone();
        labels.remove("le");
        labels
    };
    let mut buckets: HashMap<BTreeMap<String, String>, Vec<(f64, f64)>> = HashMap::new();
    let mut counts = HashMap::new();
    let mut sums = BTreeSet::new();
    for s in &f.samples {
        match s.name.strip_prefix(f.name.as_str()) {
            Some("_bucket") => {
                let le = s.labels.get("le").context("a bucket without le")?;
                let le: f64 = le.parse().with_context(|| format!("le {le:?}"))?;
                buckets.entry(key(s)).or_default().push((le, s.value));
            }
            Some("_count") => {
                counts.insert(key(s), s.value);
            }
            Some("_sum") => {
                sums.insert(key(s));
            }
            _ => bail!("sample {} in histogram {}", s.name, f.name),
        }
    }
    for (labels, bs) in &buckets {
        ensure!(
            bs.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "histogram {}{labels:?}: buckets out of order or decreasing: {bs:?}",
            f.name
        );
        let inf = bs.last().filter(|(le, _)| le.is_infinite()).map(|b| b.1);
        ensure!(
            inf.is_some() && inf == counts.get(labels).copied(),
            "histogram {}{labels:?}: +Inf bucket {inf:?} is not _count {:?}",
            f.name,
            counts.get(labels)
        );
        ensure!(
            sums.contains(labels),
            "histogram {}{labels:?}: no _sum",
            f.name
        );
    }
    ensure!(
        counts.len() == buckets.len(),
        "histogram {}: _count without buckets",
        f.name
    );
    Ok(())
}

/// PromQL words that are not metric names wherever they appear (binary operators, modifiers).
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
];
/// Keywords followed by a parenthesized list of label names.
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// The metric names a PromQL expression (with Grafana `$variables`) reads, in order of appearance,
/// without duplicates. Skipped: strings, label matchers `{...}`, ranges `[...]`, numbers and
/// durations, functions and aggregations (an identifier followed by `(`, or an aggregation
/// followed by `by`/`without`), keywords, and the label lists of `by`, `without`, `on`,
/// `ignoring`, `group_left` and `group_right`. A `__name__` matcher is an error: it hides a name.
pub fn promql_metric_names(expr: &str) -> anyhow::Result<Vec<String>> {
    let chars: Vec<char> = expr.chars().collect();
    let ident_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let next_non_space = |mut i: usize| {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        i
    };
    let mut names: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i)?;
        } else if c == '{' || c == '[' {
            let close = if c == '{' { '}' } else { ']' };
            let end = skip_until(&chars, i + 1, close)?;
            let inner: String = chars[i..end].iter().collect();
            ensure!(
                !inner.contains("__name__"),
                "a __name__ matcher in {expr:?}"
            );
            i = end;
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = skip_until(&chars, i + 1, '}')?;
            } else {
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || (matches!(chars[i], '+' | '-') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
        } else if ident_start(c) {
            let start = i;
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let lower = word.to_ascii_lowercase();
            let next = next_non_space(i);
            let next_char = chars.get(next).copied();
            if GROUPING.contains(&lower.as_str()) {
                if next_char == Some('(') {
                    i = skip_until(&chars, next + 1, ')')?;
                }
            } else if KEYWORDS.contains(&lower.as_str()) || next_char == Some('(') {
                // An operator, or a function or aggregation call.
            } else if AGGREGATIONS.contains(&lower.as_str()) && {
                let after: String = chars[next..]
                    .iter()
                    .take_while(|c| ident_char(**c))
                    .collect();
                after == "by" || after == "without"
            } {
                // `sum by (x) (...)`
            } else if !names.contains(&word) {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    Ok(names)
}

/// The index after the string that starts at `start`.
fn skip_string(chars: &[char], start: usize) -> anyhow::Result<usize> {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return Ok(i + 1),
            _ => i += 1,
        }
    }
    bail!(
        "unterminated string in {:?}",
        chars.iter().collect::<String>()
    )
}

/// The index after `close`, skipping strings on the way.
fn skip_until(chars: &[char], mut i: usize, close: char) -> anyhow::Result<usize> {
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = skip_string(chars, i)?,
            c if c == close => return Ok(i + 1),
            _ => i += 1,
        }
    }
    bail!("no {close:?} in {:?}", chars.iter().collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# HELP a_total Things.\n# TYPE a_total counter\n\
        a_total{code=\"OK\",method=\"Version\"} 3\n\
        # HELP h_seconds Time.\n# TYPE h_seconds histogram\n\
        h_seconds_bucket{op=\"ADD\",le=\"0.1\"} 1\nh_seconds_bucket{op=\"ADD\",le=\"+Inf\"} 2\n\
        h_seconds_sum{op=\"ADD\"} 0.5\nh_seconds_count{op=\"ADD\"} 2\n\
        # HELP g Level.\n# TYPE g gauge\ng NaN\n";

    #[test]
    fn parses_families_samples_and_special_values() {
        let scrape = parse(GOOD).expect("valid exposition");
        let kinds: Vec<_> = scrape
            .families
            .iter()
            .map(|f| (f.name.as_str(), f.kind.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [("a", "counter"), ("h_seconds", "histogram"), ("g", "gauge")]
        );
        assert_eq!(
            scrape.value("a_total", &[("method", "Version"), ("code", "OK")]),
            Some(3.0)
        );
        assert_eq!(scrape.value("a_total", &[("method", "Version")]), None);
        assert_eq!(scrape.sum("h_seconds_bucket", &[("op", "ADD")]), 3.0);
        assert!(scrape.expect("g", &[]).is_nan());
        assert_eq!(
            scrape.family_of_metric("a_total").map(|f| &*f.name),
            Some("a")
        );
        assert_eq!(
            scrape
                .family_of_metric("h_seconds_bucket")
                .map(|f| &*f.name),
            Some("h_seconds")
        );
        assert_eq!(scrape.family_of_metric("g").map(|f| &*f.name), Some("g"));
        assert!(scrape.family_of_metric("g_bucket").is_none());
        assert!(
            scrape.family_of_metric("a").is_none(),
            "a counter is read as a_total"
        );
        assert!(scrape.family_of_metric("h_seconds").is_none());
    }

    #[test]
    fn refuses_what_is_not_exposition_format() {
        for bad in [
            "foo{bar=baz} 1\n",
            "foo{a=\"b\"} x\n",
            "<html>\n",
            "# HELP u Untyped.\nu 1\n",
            "# HELP g G.\n# TYPE g gauge\ng 1\ng 2\n",
            "# HELP g G.\n# TYPE g gauge\ng 1\n# HELP g G.\n# TYPE g gauge\ng{a=\"1\"} 1\n",
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn finds_the_metric_names_of_promql() {
        let cases: &[(&str, &[&str])] = &[
            (
                "histogram_quantile(0.99, sum by (le, method) (rate(x_bucket{instance=~\"$instance\",a=\"b(c)\"}[$__rate_interval])))",
                &["x_bucket"],
            ),
            (
                "sum(rate(a_total{code!=\"OK\"}[5m])) / ignoring(code) group_left sum without (code) (rate(a_total[1h] offset 1d)) > bool 0.5",
                &["a_total"],
            ),
            (
                "time() - process_start_time_seconds{instance=~\"${instance}\"}",
                &["process_start_time_seconds"],
            ),
            (
                "sum(b) by (le) and on(x) c or vector(1e-3) unless d @ start()",
                &["b", "c", "d"],
            ),
            ("topk(5, count_values(\"v\", g)) + Inf", &["g"]),
        ];
        for (expr, names) in cases {
            assert_eq!(
                promql_metric_names(expr).expect(expr),
                names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                "{expr}"
            );
        }
        assert!(promql_metric_names("{__name__=~\"berth_.*\"}").is_err());
        assert!(promql_metric_names("a{b=\"c}").is_err());
    }
}
