//! `berth bench --report <file.html>`: one self-contained page (no scripts, no external files)
//! with the run's settings, the cases as a table, and two charts drawn as inline SVG: median time
//! per case (berth next to the ceiling or the plain append) and where berth's time went, phase by
//! phase.

use std::fmt::Write as _;

use crate::runner::BenchReport;

/// Colours of the phases, in [`berth::loader::PhaseTimes::named`] order.
const PHASE_COLOURS: [&str; 7] = [
    "#8e6c8a", "#4e79a7", "#59a14f", "#edc948", "#f28e2b", "#e15759", "#76b7b2",
];
const WIDTH: f64 = 720.0;
const LABEL: f64 = 300.0;
const BAR: f64 = 22.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A piece of a bar: value, colour, hover text.
type Segment<'a> = (f64, &'a str, String);

/// Horizontal bars: one per `(label, segments)`.
fn bars(rows: &[(String, Vec<Segment<'_>>)], unit: &str) -> String {
    let max = rows
        .iter()
        .map(|(_, segments)| segments.iter().map(|s| s.0).sum::<f64>())
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let scale = (WIDTH - LABEL - 70.0) / max;
    let height = rows.len() as f64 * (BAR + 10.0) + 10.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    for (index, (label, segments)) in rows.iter().enumerate() {
        let y = 10.0 + index as f64 * (BAR + 10.0);
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            LABEL - 8.0,
            y + BAR * 0.7,
            escape(label)
        );
        let mut x = LABEL;
        for (value, colour, title) in segments {
            let w = value * scale;
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{BAR}" fill="{colour}"><title>{}</title></rect>"#,
                escape(title)
            );
            x += w;
        }
        let total: f64 = segments.iter().map(|s| s.0).sum();
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}">{total:.2} {unit}</text>"#,
            x + 6.0,
            y + BAR * 0.7
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The report as an HTML page.
pub fn render(report: &BenchReport) -> String {
    let mut page = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>berth bench</title><style>\
         body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse}\
         td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}\
         .legend span{display:inline-block;margin-right:1em}.legend i{display:inline-block;width:.9em;height:.9em;margin-right:.3em}\
         </style></head><body>",
    );
    let _ = write!(
        page,
        "<h1>berth bench</h1><p>{} rows of <b>{}</b>, {} ({:.1} MiB of Parquet, row groups of {} rows) into <b>{}</b>, {} parallel.</p>",
        report.rows,
        escape(&report.shape),
        escape(&report.disposition),
        report.parquet_bytes as f64 / (1 << 20) as f64,
        report.row_group_rows,
        escape(&report.destination),
        report.parallel_jobs
    );
    page.push_str(
        "<table><tr><th>case</th><th>min s</th><th>median s</th><th>max s</th><th>rows/s</th><th>MB/s</th>\
         <th>peak RSS MiB</th><th>ratio</th></tr>",
    );
    for case in &report.cases {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.0}</td><td>{:.1}</td><td>{}</td><td>{}</td></tr>",
            escape(&case.name),
            case.seconds.min,
            case.seconds.median,
            case.seconds.max,
            case.rows_per_second,
            case.mb_per_second,
            case.peak_rss_bytes
                .map_or_else(|| "-".into(), |b| format!("{:.1}", b as f64 / (1 << 20) as f64)),
            case.berth_ratio.map_or_else(|| "-".into(), |r| format!("{r:.2}x")),
        );
    }
    page.push_str("</table><h2>Median time per case</h2>");
    let times: Vec<_> = report
        .cases
        .iter()
        .enumerate()
        .map(|(index, case)| {
            let colour = if index % 2 == 0 { "#4e79a7" } else { "#bab0ac" };
            let title = format!("{}: {:.2} s median", case.name, case.seconds.median);
            (case.name.clone(), vec![(case.seconds.median, colour, title)])
        })
        .collect();
    page.push_str(&bars(&times, "s"));
    let phased: Vec<_> = report.cases.iter().filter(|c| !c.phases.is_empty()).collect();
    if !phased.is_empty() {
        page.push_str(
            "<h2>Where berth's time goes</h2><p>Phases one after the other (migrate, jobs, follow-up, commit), \
             with the job time split into decode, encode and transfer on a second bar (summed over job parts, \
             which overlap).</p><div class=\"legend\">",
        );
        if let Some(first) = phased.first() {
            for (phase, colour) in first.phases.iter().zip(PHASE_COLOURS) {
                let _ = write!(
                    page,
                    "<span><i style=\"background:{colour}\"></i>{}</span>",
                    phase.phase
                );
            }
        }
        page.push_str("</div>");
        let mut rows = Vec::new();
        for case in phased {
            let segment = |names: &[&str]| -> Vec<Segment<'_>> {
                case.phases
                    .iter()
                    .zip(PHASE_COLOURS)
                    .filter(|(p, _)| names.contains(&p.phase.as_str()))
                    .map(|(p, colour)| (p.seconds, colour, format!("{}: {:.2} s", p.phase, p.seconds)))
                    .collect()
            };
            rows.push((case.name.clone(), segment(&["migrate", "jobs", "followup", "commit"])));
            rows.push((
                format!("{}: job parts", case.name),
                segment(&["decode", "encode", "transfer"]),
            ));
        }
        page.push_str(&bars(&rows, "s"));
    }
    page.push_str("</body></html>\n");
    page
}
