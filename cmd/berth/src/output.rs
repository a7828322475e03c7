//! `-o table|json|yaml|wide` and `--format TEMPLATE` for the list and inspect verbs.
//!
//! JSON is the model: every verb builds its documented JSON value, and YAML and templates are
//! made from that, so the three can never disagree. Templates are a small subset of Go's, as
//! docker and crictl users write them: `{{.Field}}`, `{{.Field.Sub}}`, `{{.}}` and
//! `{{json .Field}}`; field names match case-insensitively (`{{.ID}}` is `id`); `\t` and `\n`
//! are a tab and a newline.

use std::io::Write;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns, IDs shortened.
    Table,
    /// JSON, the stable form for scripts (fields listed in README).
    Json,
    /// The same document as YAML.
    Yaml,
    /// Columns with full IDs and more details.
    Wide,
}

#[derive(Debug, Clone, Default, Args)]
pub struct OutputArgs {
    /// Output format [default: table for lists, json for inspect].
    #[arg(long, short = 'o', value_enum, value_name = "FORMAT")]
    pub output: Option<Format>,
    /// Print each item through a template, e.g. '{{.ID}}\t{{.Name}}' (fields as in -o json).
    #[arg(long, value_name = "TEMPLATE", conflicts_with = "output")]
    pub format: Option<String>,
}

impl OutputArgs {
    /// The format asked for, or `default`.
    pub fn format_or(&self, default: Format) -> Format {
        self.output.unwrap_or(default)
    }
}

/// Prints a list verb's document: `items` under `key` for JSON/YAML, one template line per item
/// for `--format`, or `table(wide)` otherwise.
pub fn list(
    args: &OutputArgs,
    key: &str,
    items: Vec<Value>,
    table: impl FnOnce(&mut dyn Write, bool) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if let Some(template) = &args.format {
        let template = Template::parse(template)?;
        for item in &items {
            writeln!(out, "{}", template.render(item)?)?;
        }
        return Ok(());
    }
    match args.format_or(Format::Table) {
        Format::Table => table(&mut out, false)?,
        Format::Wide => table(&mut out, true)?,
        format => {
            let mut doc = serde_json::Map::new();
            doc.insert(key.to_string(), Value::Array(items));
            write_doc(&mut out, format, &Value::Object(doc))?;
        }
    }
    Ok(())
}

/// Prints an inspect verb's document; table and wide list its scalar fields as `PATH VALUE`.
pub fn one(args: &OutputArgs, doc: &Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if let Some(template) = &args.format {
        writeln!(out, "{}", Template::parse(template)?.render(doc)?)?;
        return Ok(());
    }
    match args.format_or(Format::Json) {
        format @ (Format::Json | Format::Yaml) => write_doc(&mut out, format, doc)?,
        Format::Table | Format::Wide => {
            let mut rows = Vec::new();
            flatten("", doc, &mut rows);
            crate::table::print(&mut out, ["FIELD", "VALUE"], &rows)?;
        }
    }
    Ok(())
}

fn write_doc(out: &mut dyn Write, format: Format, doc: &Value) -> anyhow::Result<()> {
    if format == Format::Yaml {
        write!(out, "{}", yaml(doc))?;
    } else {
        writeln!(out, "{}", serde_json::to_string_pretty(doc)?)?;
    }
    Ok(())
}

/// Scalars of a document as `[dotted.path, value]` rows (array items by index).
fn flatten(prefix: &str, value: &Value, rows: &mut Vec<[String; 2]>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match value {
        Value::Object(map) => map.iter().for_each(|(k, v)| flatten(&join(k), v, rows)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| flatten(&join(&i.to_string()), v, rows)),
        scalar => rows.push([prefix.to_string(), text(scalar)]),
    }
}

/// How a value prints in a template or table: strings bare, null empty, the rest as JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[derive(Debug, PartialEq)]
enum Piece {
    Literal(String),
    /// A field path (empty: the item itself); `json`: printed as compact JSON.
    Field {
        path: Vec<String>,
        json: bool,
    },
}

/// A parsed `--format` template.
#[derive(Debug)]
pub struct Template(Vec<Piece>);

impl Template {
    pub fn parse(source: &str) -> anyhow::Result<Template> {
        let source = source.replace("\\t", "\t").replace("\\n", "\n");
        let mut pieces = Vec::new();
        let mut rest = source.as_str();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                pieces.push(Piece::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .with_context(|| format!("--format: unclosed {{{{ in {source:?}"))?;
            pieces.push(field(after[..end].trim())?);
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.to_string()));
        }
        Ok(Template(pieces))
    }

    pub fn render(&self, item: &Value) -> anyhow::Result<String> {
        let mut line = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Literal(s) => line.push_str(s),
                Piece::Field { path, json } => {
                    let value = lookup(item, path)?;
                    line.push_str(&if *json {
                        value.to_string()
                    } else {
                        text(value)
                    });
                }
            }
        }
        Ok(line)
    }
}

/// One `{{ ... }}` action: `.A.B`, `.`, or `json .A.B`.
fn field(action: &str) -> anyhow::Result<Piece> {
    let (json, reference) = match action.strip_prefix("json") {
        Some(rest) if rest.starts_with([' ', '\t']) => (true, rest.trim()),
        _ => (false, action),
    };
    let Some(path) = reference.strip_prefix('.') else {
        bail!(
            "--format: {{{{{action}}}}} is not supported: use {{{{.Field}}}} or {{{{json .Field}}}}"
        );
    };
    let path: Vec<String> = if path.is_empty() {
        Vec::new()
    } else {
        path.split('.').map(str::to_string).collect()
    };
    if path
        .iter()
        .any(|p| p.is_empty() || p.contains(char::is_whitespace))
    {
        bail!("--format: bad field reference {{{{{action}}}}}");
    }
    Ok(Piece::Field { path, json })
}

fn lookup<'a>(item: &'a Value, path: &[String]) -> anyhow::Result<&'a Value> {
    let mut value = item;
    for name in path {
        value = match value {
            Value::Object(map) => map
                .get(name)
                .or_else(|| {
                    map.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v)
                })
                .with_context(|| {
                    let fields: Vec<&str> = map.keys().map(String::as_str).collect();
                    format!(
                        "--format: no field {name:?} (fields: {})",
                        fields.join(", ")
                    )
                })?,
            Value::Array(items) => name
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get(i))
                .with_context(|| format!("--format: no item {name:?}"))?,
            _ => bail!("--format: {name:?} of a value that has no fields"),
        };
    }
    Ok(value)
}

/// A JSON document as block-style YAML (YAML 1.2 reads it back as the same data).
pub fn yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => yaml_into(value, 0, &mut out),
        Value::Array(a) if !a.is_empty() => yaml_into(value, 0, &mut out),
        scalar => {
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
    out
}

fn is_block(value: &Value) -> bool {
    match value {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

fn yaml_into(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                out.push_str(&format!("{pad}{}:", yaml_string(k)));
                if is_block(v) {
                    out.push('\n');
                    yaml_into(v, indent + 2, out);
                } else {
                    out.push_str(&format!(" {}\n", yaml_scalar(v)));
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                if is_block(v) {
                    // The item's first line goes after "- ", the rest stays indented under it.
                    let mut item = String::new();
                    yaml_into(v, indent + 2, &mut item);
                    out.push_str(&pad);
                    out.push_str("- ");
                    out.push_str(&item[indent + 2..]);
                } else {
                    out.push_str(&format!("{pad}- {}\n", yaml_scalar(v)));
                }
            }
        }
        scalar => out.push_str(&format!("{pad}{}\n", yaml_scalar(scalar))),
    }
}

fn yaml_scalar(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => yaml_string(s),
        Value::Array(_) => "[]".to_string(),
        Value::Object(_) => "{}".to_string(),
    }
}

/// A string plain when YAML can only read it back as that string, else double-quoted (JSON's
/// escapes are valid in YAML's double-quoted style).
fn yaml_string(s: &str) -> String {
    let plain_chars = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-./@+:".contains(c));
    let starts_well = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '/' || c == '_');
    let keyword = matches!(
        s.to_ascii_lowercase().as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null" | "~"
    );
    // A leading digit may read as a number, a date or a time (YAML 1.1: "12:30", "2024-01-02").
    let numeric = s.parse::<f64>().is_ok() || s.starts_with(|c: char| c.is_ascii_digit());
    if plain_chars && starts_well && !keyword && !numeric && !s.ends_with(':') {
        s.to_string()
    } else {
        Value::from(s).to_string()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn templates_reference_fields_case_insensitively() {
        let item = json!({"id": "abc", "name": "web", "labels": {"app": "x"}, "attempt": 2,
                          "tags": ["a", "b"], "none": null});
        let t = Template::parse("{{.ID}}\\t{{ .Name }} {{.labels.app}}/{{.Attempt}}").unwrap();
        assert_eq!(t.render(&item).unwrap(), "abc\tweb x/2");
        let t = Template::parse("{{json .tags}} {{.tags.1}}[{{.none}}]").unwrap();
        assert_eq!(t.render(&item).unwrap(), r#"["a","b"] b[]"#);
        let t = Template::parse("{{json .}}").unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&t.render(&item).unwrap()).unwrap(),
            item
        );
        let missing = Template::parse("{{.Nope}}").unwrap().render(&item);
        assert!(format!("{:#}", missing.unwrap_err()).contains("fields: attempt, id,"));
        assert!(Template::parse("{{.ID").is_err());
        assert!(Template::parse("{{range .}}").is_err());
        assert!(Template::parse("{{.a..b}}").is_err());
        assert_eq!(
            Template::parse("plain").unwrap().render(&item).unwrap(),
            "plain"
        );
    }

    #[test]
    fn yaml_is_block_style_and_quotes_what_would_change_meaning() {
        let doc = json!({
            "images": [
                {"id": "sha256:ab", "repoTags": ["busybox:latest"], "size": 10, "pinned": false,
                 "empty": [], "map": {}, "uid": null},
                {"id": "x y", "repoTags": [], "size": 0, "pinned": true, "empty": [], "map": {"k": "v"}, "uid": 0}
            ],
            "odd": ["true", "1.5", "007", "a: b", "", "-x", "#c", "line\nbreak", "10:20",
                    "2024-01-02T03:04:05Z", "1.2.3.4:5/x", "No", "a/b:c@sha256:0"]
        });
        let expected = "\
images:
  - empty: []
    id: sha256:ab
    map: {}
    pinned: false
    repoTags:
      - busybox:latest
    size: 10
    uid: null
  - empty: []
    id: \"x y\"
    map:
      k: v
    pinned: true
    repoTags: []
    size: 0
    uid: 0
odd:
  - \"true\"
  - \"1.5\"
  - \"007\"
  - \"a: b\"
  - \"\"
  - \"-x\"
  - \"#c\"
  - \"line\\nbreak\"
  - \"10:20\"
  - \"2024-01-02T03:04:05Z\"
  - \"1.2.3.4:5/x\"
  - \"No\"
  - a/b:c@sha256:0
";
        assert_eq!(yaml(&doc), expected);
        assert_eq!(yaml(&json!("s")), "s\n");
        assert_eq!(yaml(&json!([])), "[]\n");
    }

    #[test]
    fn inspect_tables_flatten_scalars() {
        let mut rows = Vec::new();
        flatten("", &json!({"a": {"b": 1, "c": ["x"]}, "d": "e"}), &mut rows);
        assert_eq!(
            rows,
            [
                ["a.b".to_string(), "1".to_string()],
                ["a.c.0".to_string(), "x".to_string()],
                ["d".to_string(), "e".to_string()]
            ]
        );
    }
}
