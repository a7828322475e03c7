//! Column-aligned tables, as docker and crictl print them.

use std::io::Write;

/// Writes `header` and `rows` with every column padded to its widest cell.
pub fn print<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.to_vec()).collect();
    print_rows(out, &header, &rows)
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

/// [`print`] for rows whose width is known only at run time.
pub fn print_rows(
    out: &mut dyn Write,
    header: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("   ").trim_end())?;
    }
    Ok(())
}
