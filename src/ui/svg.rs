//! Pictures rendered on the server as SVG: heatmaps (rows × columns of counts, and the
//! coverage grid with one cell per operation) and a federation's topology. Every picture has a
//! `<title>` and an `aria-label`, every cell its own `<title>` with the number it stands for,
//! and colour is never the only carrier of meaning (the legend and the cells say the numbers;
//! topology nodes print their reality level).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::html::esc;

/// A plain heatmap: one row per key, one count per column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Heatmap {
    pub columns: Vec<String>,
    pub rows: Vec<(String, Vec<u64>)>,
}

/// Fills of the five buckets, lightest (no hits) to darkest; the text colour on each keeps a
/// contrast of at least 4.5:1.
const FILLS: [&str; 5] = ["#eef1f4", "#c6dbef", "#6baed6", "#2171b5", "#08306b"];
const INKS: [&str; 5] = ["#1a1a1a", "#1a1a1a", "#1a1a1a", "#ffffff", "#ffffff"];

/// The bucket of `count` against the largest count `max` (0 only for no hits; then quarters
/// of the logarithmic range, so a few hot cells do not wash out the rest).
pub fn bucket(count: u64, max: u64) -> usize {
    if count == 0 || max == 0 {
        return 0;
    }
    let l = ((count as f64).ln_1p() / (max as f64).ln_1p()).clamp(0.0, 1.0);
    ((l * 4.0).ceil() as usize).clamp(1, 4)
}

/// The counts each bucket stands for, as text ("no hits", "1", "2–5"); empty buckets left
/// out.
pub fn bucket_ranges(max: u64) -> Vec<(usize, String)> {
    let mut out = vec![(0, "no hits".to_string())];
    if max == 0 {
        return out;
    }
    // The smallest count in bucket `b` or above (the buckets grow with the count).
    let first_at = |b: usize| {
        let (mut lo, mut hi) = (1u64, max);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if bucket(mid, max) >= b {
                hi = mid
            } else {
                lo = mid + 1
            }
        }
        lo
    };
    for b in 1..=4 {
        let lo = first_at(b);
        if bucket(lo, max) != b {
            continue;
        }
        let hi = if b == 4 {
            max
        } else {
            first_at(b + 1).saturating_sub(1)
        };
        let hi = if bucket(hi, max) == b { hi } else { lo };
        out.push((
            b,
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}–{hi}")
            },
        ));
    }
    out
}

/// The legend: what each fill means, as text.
fn legend(out: &mut String, max: u64) {
    out.push_str("<ul class=\"legend\" aria-label=\"Legend\">");
    for (b, text) in bucket_ranges(max) {
        let _ = write!(
            out,
            "<li><svg width=\"14\" height=\"14\" aria-hidden=\"true\"><rect width=\"14\" height=\"14\" fill=\"{}\" stroke=\"#8a8f98\"/></svg> {}</li>",
            FILLS[b],
            esc(&text)
        );
    }
    out.push_str("</ul>");
}

/// A heatmap as SVG, with `id` on the `<svg>` and `title` as its accessible name. Columns
/// are labelled below every seventh cell (and the last); cells print their count when they
/// are few enough to read.
pub fn heatmap(map: &Heatmap, id: &str, title: &str) -> String {
    const CELL: usize = 26;
    const GAP: usize = 2;
    let label_w = 8 * map
        .rows
        .iter()
        .map(|r| r.0.chars().count().min(28))
        .max()
        .unwrap_or(4)
        .max(4)
        + 12;
    let cols = map.columns.len();
    // Room after the last cell for the last column's label.
    let width = label_w + cols * (CELL + GAP) + 90;
    let height = map.rows.len() * (CELL + GAP) + 24;
    let max = map
        .rows
        .iter()
        .flat_map(|r| r.1.iter().copied())
        .max()
        .unwrap_or(0);
    let total: u64 = map.rows.iter().flat_map(|r| r.1.iter()).sum();
    let mut out = String::new();
    let summary = format!(
        "{title}: {} rows × {} columns, {total} in all, at most {max} in one cell",
        map.rows.len(),
        cols
    );
    let _ = write!(
        out,
        "<figure class=\"map\"><svg id=\"{id}\" class=\"heatmap\" role=\"img\" aria-label=\"{s}\" \
         viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>{s}</title>",
        id = esc(id),
        s = esc(&summary),
    );
    let show_numbers = map.rows.len() * cols <= 2000;
    for (r, (key, counts)) in map.rows.iter().enumerate() {
        let y = r * (CELL + GAP);
        let shown: String = key.chars().take(28).collect();
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"rowlabel\">{}</text>",
            label_w - 6,
            y + CELL / 2 + 4,
            esc(&shown)
        );
        for (c, &n) in counts.iter().enumerate().take(cols) {
            let x = label_w + c * (CELL + GAP);
            let b = bucket(n, max);
            let col = map.columns.get(c).map(String::as_str).unwrap_or("");
            let _ = write!(
                out,
                "<g><rect class=\"cell\" x=\"{x}\" y=\"{y}\" width=\"{CELL}\" height=\"{CELL}\" fill=\"{}\"><title>{}, {}: {n}</title></rect>",
                FILLS[b],
                esc(key),
                esc(col)
            );
            if show_numbers && n > 0 {
                let _ = write!(
                    out,
                    "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"num\" fill=\"{}\" aria-hidden=\"true\">{}</text>",
                    x + CELL / 2,
                    y + CELL / 2 + 4,
                    INKS[b],
                    compact(n)
                );
            }
            out.push_str("</g>");
        }
    }
    let base = map.rows.len() * (CELL + GAP) + 14;
    for (c, col) in map.columns.iter().enumerate() {
        if c % 7 == 0 || c + 1 == cols {
            let _ = write!(
                out,
                "<text x=\"{}\" y=\"{base}\" class=\"collabel\">{}</text>",
                label_w + c * (CELL + GAP),
                esc(col)
            );
        }
    }
    out.push_str("</svg>");
    legend(&mut out, max);
    out.push_str("</figure>");
    out
}

/// A count in at most four characters (`1.2k`, `35k`, `1.2M`).
fn compact(n: u64) -> String {
    match n {
        0..=999 => n.to_string(),
        1_000..=9_999 => format!("{:.1}k", n as f64 / 1000.0),
        10_000..=999_999 => format!("{}k", n / 1000),
        _ => format!("{:.1}M", n as f64 / 1_000_000.0),
    }
}

/// One operation of the coverage grid.
#[derive(Debug, Clone, PartialEq)]
pub struct OpCell {
    pub label: String,
    pub hits: u64,
    /// Hits by status class: 2xx, 3xx, 4xx, 5xx, other (no response, 1xx).
    pub by_class: [u64; 5],
}

/// The coverage grid: one row of cells per service (wrapping after `PER_LINE`), one cell per
/// operation, coloured by its hits.
pub fn coverage_grid(rows: &[(String, Vec<OpCell>)], id: &str, title: &str) -> String {
    const CELL: usize = 14;
    const GAP: usize = 2;
    const PER_LINE: usize = 50;
    let label_w = 8 * rows
        .iter()
        .map(|r| r.0.chars().count().min(32))
        .max()
        .unwrap_or(4)
        .max(4)
        + 12;
    let lines_of = |n: usize| n.div_ceil(PER_LINE).max(1);
    let width = label_w + PER_LINE * (CELL + GAP) + 10;
    let height: usize = rows
        .iter()
        .map(|r| lines_of(r.1.len()) * (CELL + GAP) + 6)
        .sum::<usize>()
        + 4;
    let max = rows
        .iter()
        .flat_map(|r| r.1.iter().map(|c| c.hits))
        .max()
        .unwrap_or(0);
    let ops: usize = rows.iter().map(|r| r.1.len()).sum();
    let never = rows
        .iter()
        .flat_map(|r| r.1.iter())
        .filter(|c| c.hits == 0)
        .count();
    let summary = format!(
        "{title}: {ops} operations of {} services, {never} never hit",
        rows.len()
    );
    let mut out = String::with_capacity(ops * 120 + 512);
    let _ = write!(
        out,
        "<figure class=\"map\"><svg id=\"{id}\" class=\"heatmap coverage\" role=\"img\" aria-label=\"{s}\" \
         viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>{s}</title>",
        id = esc(id),
        s = esc(&summary),
    );
    let mut y = 0;
    for (service, cells) in rows {
        let shown: String = service.chars().take(32).collect();
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"rowlabel\">{}</text>",
            label_w - 6,
            y + CELL - 3,
            esc(&shown)
        );
        for (i, cell) in cells.iter().enumerate() {
            let x = label_w + (i % PER_LINE) * (CELL + GAP);
            let cy = y + (i / PER_LINE) * (CELL + GAP);
            let [s2, s3, s4, s5, other] = cell.by_class;
            let hits = if cell.hits == 0 {
                "no hits".to_string()
            } else {
                format!(
                    "{} hits (2xx {s2}, 3xx {s3}, 4xx {s4}, 5xx {s5}, other {other})",
                    cell.hits
                )
            };
            let _ = write!(
                out,
                "<rect class=\"cell\" x=\"{x}\" y=\"{cy}\" width=\"{CELL}\" height=\"{CELL}\" fill=\"{}\"><title>{} {}: {hits}</title></rect>",
                FILLS[bucket(cell.hits, max)],
                esc(service),
                esc(&cell.label),
            );
        }
        y += lines_of(cells.len()) * (CELL + GAP) + 6;
    }
    out.push_str("</svg>");
    legend(&mut out, max);
    out.push_str("</figure>");
    out
}

/// One node of a topology picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    /// `real`, `mock_v3`, `blended` or `chaos_driven`.
    pub level: String,
    pub dependencies: Vec<String>,
}

/// Fill and edge colour per reality level (dark text on every fill).
fn level_colours(level: &str) -> (&'static str, &'static str) {
    match level {
        "real" => ("#d9f0d3", "#1b7837"),
        "mock_v3" => ("#deebf7", "#2166ac"),
        "blended" => ("#e7d4e8", "#762a83"),
        "chaos_driven" => ("#fee0b6", "#b35806"),
        _ => ("#eeeeee", "#555555"),
    }
}

/// The human name of a reality level.
pub fn level_label(level: &str) -> &str {
    match level {
        "real" => "real upstream",
        "mock_v3" => "mock",
        "blended" => "blended",
        "chaos_driven" => "chaos",
        other => other,
    }
}

/// A federation's services laid out by start order: each column holds the services whose
/// dependencies (inside the federation) all sit in earlier columns; arrows go from a
/// dependency to the service that needs it.
pub fn topology(nodes: &[Node], id: &str, title: &str) -> String {
    const W: usize = 170;
    const H: usize = 46;
    const COL_GAP: usize = 60;
    const ROW_GAP: usize = 16;
    let index: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    // Depth: 0 without dependencies in the federation, else one more than the deepest; a
    // cycle (refused by validation) stops at the node count.
    let mut depth = vec![0usize; nodes.len()];
    for _ in 0..nodes.len() {
        let mut changed = false;
        for (i, n) in nodes.iter().enumerate() {
            let d = n
                .dependencies
                .iter()
                .filter_map(|d| index.get(d.as_str()))
                .filter(|&&j| j != i)
                .map(|&j| depth[j] + 1)
                .max()
                .unwrap_or(0)
                .min(nodes.len());
            if d != depth[i] {
                depth[i] = d;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let columns = depth.iter().copied().max().map(|m| m + 1).unwrap_or(0);
    let mut slot = vec![0usize; nodes.len()];
    let mut per_col = vec![0usize; columns];
    for (i, &d) in depth.iter().enumerate() {
        slot[i] = per_col[d];
        per_col[d] += 1;
    }
    let rows = per_col.iter().copied().max().unwrap_or(0);
    let width = (columns * (W + COL_GAP)).max(W + COL_GAP) + 10;
    let height = (rows * (H + ROW_GAP)).max(H) + 20;
    let pos = |i: usize| (10 + depth[i] * (W + COL_GAP), 10 + slot[i] * (H + ROW_GAP));
    let edges: usize = nodes
        .iter()
        .map(|n| {
            n.dependencies
                .iter()
                .filter(|d| index.contains_key(d.as_str()))
                .count()
        })
        .sum();
    let summary = format!("{title}: {} services, {edges} dependencies", nodes.len());
    let marker = format!("{}-arrow", super::html::class_token(id));
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg id=\"{id}\" class=\"topology\" role=\"img\" aria-label=\"{s}\" viewBox=\"0 0 {width} {height}\" \
         width=\"{width}\" height=\"{height}\" xmlns=\"http://www.w3.org/2000/svg\"><title>{s}</title>\
         <defs><marker id=\"{marker}\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" \
         markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#444\"/></marker></defs>",
        id = esc(id),
        s = esc(&summary),
    );
    for (i, n) in nodes.iter().enumerate() {
        for d in &n.dependencies {
            let Some(&j) = index.get(d.as_str()) else {
                continue;
            };
            if j == i {
                continue;
            }
            let (x1, y1) = pos(j);
            let (x2, y2) = pos(i);
            let _ = write!(
                out,
                "<line class=\"edge\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#444\" stroke-width=\"1.5\" marker-end=\"url(#{marker})\"><title>{} depends on {}</title></line>",
                x1 + W,
                y1 + H / 2,
                x2,
                y2 + H / 2,
                esc(&n.name),
                esc(d)
            );
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        let (x, y) = pos(i);
        let (fill, stroke) = level_colours(&n.level);
        let name: String = n.name.chars().take(20).collect();
        let _ = write!(
            out,
            "<g class=\"node\"><title>{full}: {lvl}</title><rect x=\"{x}\" y=\"{y}\" width=\"{W}\" height=\"{H}\" rx=\"6\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"2\"/>\
             <rect x=\"{x}\" y=\"{y}\" width=\"6\" height=\"{H}\" fill=\"{stroke}\"/>\
             <text x=\"{tx}\" y=\"{y1}\" class=\"nodename\">{name}</text>\
             <text x=\"{tx}\" y=\"{y2}\" class=\"nodelevel\">{lvl}</text></g>",
            full = esc(&n.name),
            lvl = esc(level_label(&n.level)),
            tx = x + 14,
            y1 = y + 19,
            y2 = y + 37,
            name = esc(&name),
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_zero_only_without_hits() {
        assert_eq!(bucket(0, 10), 0);
        assert_eq!(bucket(1, 1), 4);
        assert_eq!(bucket(1, 1000), 1);
        assert_eq!(bucket(1000, 1000), 4);
        assert!((1..=4).contains(&bucket(30, 1000)));
    }

    #[test]
    fn the_legend_names_whole_ranges() {
        assert_eq!(bucket_ranges(0), vec![(0, "no hits".to_string())]);
        let r = bucket_ranges(5);
        assert_eq!(r[0].1, "no hits");
        assert_eq!(r.last().map(|x| x.1.as_str()), Some("3–5"));
        let r = bucket_ranges(1_000_000);
        assert_eq!(r.len(), 5);
        assert!(r[1].1.starts_with("1–"));
        // Every count falls into the range its bucket names.
        for (b, text) in &r[1..] {
            let (lo, hi) = text.split_once('–').unwrap();
            let (lo, hi): (u64, u64) = (lo.parse().unwrap(), hi.parse().unwrap());
            assert_eq!(bucket(lo, 1_000_000), *b);
            assert_eq!(bucket(hi, 1_000_000), *b);
        }
    }

    #[test]
    fn a_heatmap_has_one_cell_per_count_and_escapes_names() {
        let map = Heatmap {
            columns: vec!["2026-12-01".into(), "2026-12-02".into()],
            rows: vec![("<script>".into(), vec![0, 3]), ("b".into(), vec![1, 0])],
        };
        let svg = heatmap(&map, "m", "Usage");
        assert_eq!(svg.matches("class=\"cell\"").count(), 4);
        assert!(svg.contains("&lt;script&gt;"));
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("aria-label=\"Usage: 2 rows × 2 columns, 4 in all"));
    }

    #[test]
    fn the_coverage_grid_has_one_cell_per_operation() {
        let cell = |l: &str, h| OpCell {
            label: l.into(),
            hits: h,
            by_class: [h, 0, 0, 0, 0],
        };
        let rows = vec![
            (
                "a".to_string(),
                (0..120).map(|i| cell(&format!("op{i}"), i)).collect(),
            ),
            ("b".to_string(), vec![cell("\"x\"", 0)]),
        ];
        let svg = coverage_grid(&rows, "coverage-map", "Coverage");
        assert_eq!(svg.matches("<rect class=\"cell\"").count(), 121);
        assert!(svg.contains("&quot;x&quot;: no hits"));
        assert!(svg.contains("op7: 7 hits (2xx 7, 3xx 0, 4xx 0, 5xx 0, other 0)"));
        assert!(svg.contains("121 operations of 2 services, 2 never hit"));
    }

    #[test]
    fn topology_places_dependencies_first_and_labels_levels() {
        let n = |name: &str, level: &str, deps: &[&str]| Node {
            name: name.into(),
            level: level.into(),
            dependencies: deps.iter().map(|d| d.to_string()).collect(),
        };
        let svg = topology(
            &[
                n("payments", "mock_v3", &["auth"]),
                n("auth", "real", &[]),
                n("<x>", "chaos_driven", &["payments", "elsewhere"]),
            ],
            "fed-0",
            "shop",
        );
        assert!(svg.contains("3 services, 2 dependencies"));
        assert_eq!(svg.matches("class=\"edge\"").count(), 2);
        assert!(svg.contains(">real upstream</text>"));
        assert!(svg.contains("&lt;x&gt;: chaos"));
        assert!(!svg.contains("<x>"));
    }
}
