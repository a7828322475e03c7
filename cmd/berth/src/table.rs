//! Column-aligned tables, as docker and crictl print them.

use std::io::Write;

/// Writes `header` and `rows` with every column padded to its widest cell.
pub fn print<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let header = header.map(str::to_string);
    let mut widths = header.clone().map(|h| h.len());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("   ").trim_end())?;
    }
    Ok(())
}

/// `bytes` in the largest of `units` (each `base` times the previous) that keeps the value at or
/// above 1; `None` below the second unit (print plain bytes then).
pub fn scaled<'a>(bytes: u64, base: f64, units: &[&'a str]) -> Option<(f64, &'a str)> {
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= base && unit < units.len() - 1 {
        value /= base;
        unit += 1;
    }
    (unit > 0).then(|| (value, units[unit]))
}
