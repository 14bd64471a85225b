//! The readable HTML page of a drill report: verdicts, faults, the timeline, and a chart of
//! acknowledged, failed and unknown operations and p99 latency per second, with the
//! faults marked. Self-contained (inline SVG, no scripts, no external assets).

use std::fmt::Write;

use super::report::{DrillReport, SecondStats};
use crate::checker::Verdict;

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders `report` as a standalone HTML page.
pub fn render(report: &DrillReport) -> String {
    let mut h = String::new();
    let status = if report.passed { "PASSED" } else { "FAILED" };
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Reprise drill {sc}: {status}</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:1000px}}td,th{{padding:2px 8px;text-align:left;vertical-align:top}}\
         .pass{{color:#1a7f37}}.fail{{color:#cf222e}}.unknown{{color:#9a6700}}pre{{white-space:pre-wrap;font-size:12px}}</style></head><body>",
        sc = esc(&report.scenario)
    );
    let class = if report.passed { "pass" } else { "fail" };
    let _ = write!(
        h,
        "<h1>Drill {} — <span class=\"{class}\">{status}</span></h1>",
        esc(&report.scenario)
    );
    let rto = report
        .rto_ms
        .map(|r| format!("{r} ms"))
        .unwrap_or_else(|| "not measured".into());
    let _ = write!(
        h,
        "<table><tr><th>seed</th><td>{}</td></tr><tr><th>commit</th><td>{}</td></tr><tr><th>cluster</th><td>{} sites × {} nodes</td></tr>\
         <tr><th>duration</th><td>{:.1} s</td></tr><tr><th>operations</th><td>{} ok, {} failed, {} unknown</td></tr>\
         <tr><th>RTO</th><td>{rto}</td></tr><tr><th>RPO</th><td>{} acknowledged writes lost{}</td></tr></table>",
        report.seed,
        esc(&report.commit),
        report.sites,
        report.nodes_per_site,
        report.duration_ms as f64 / 1000.0,
        report.ops.ok,
        report.ops.failed,
        report.ops.unknown,
        report.rpo_writes_lost,
        report
            .rpo_ms
            .map(|ms| format!(" ({ms} ms after the restore point)"))
            .unwrap_or_default()
    );
    h.push_str("<h2>Availability and latency</h2>");
    h.push_str(&chart(&report.seconds, report));
    checkers(&mut h, report);
    h.push_str(
        "<h2>Faults</h2><table><tr><th>at</th><th>fault</th><th>target</th><th>verified</th></tr>",
    );
    for f in &report.faults {
        let _ = write!(
            h,
            "<tr><td>{} ms</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            f.at_ms,
            esc(&f.kind),
            esc(&f.target),
            f.verified
        );
    }
    h.push_str("</table><h2>Timeline</h2><table>");
    for e in &report.timeline {
        let _ = write!(
            h,
            "<tr><td>{} ms</td><td>{}</td></tr>",
            e.at_ms,
            esc(&e.what)
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

fn checkers(h: &mut String, report: &DrillReport) {
    h.push_str("<h2>Checkers</h2><table><tr><th>checker</th><th>verdict</th><th>summary</th></tr>");
    for c in &report.checkers {
        let (class, verdict, details) = match &c.verdict {
            Verdict::Pass => ("pass", "pass".to_string(), String::new()),
            Verdict::Fail { details } => ("fail", "FAIL".to_string(), details.join("\n")),
            Verdict::Unknown { reason } => ("unknown", format!("unknown: {reason}"), String::new()),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"{class}\">{}</td><td>{}",
            esc(&c.checker),
            esc(&verdict),
            esc(&c.summary)
        );
        if !details.is_empty() {
            let _ = write!(h, "<pre>{}</pre>", esc(&details));
        }
        h.push_str("</td></tr>");
    }
    h.push_str("</table>");
}

/// Stacked bars of operations per second (ok green, failed red, unknown amber), a p99
/// latency line (blue, right axis), and a red marker at every fault.
fn chart(seconds: &[SecondStats], report: &DrillReport) -> String {
    let (w, hgt, pad) = (900.0, 240.0, 40.0);
    let n = seconds.len().max(1) as f64;
    let max_ops = seconds
        .iter()
        .map(|s| s.ok + s.failed + s.unknown)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let max_lat = seconds.iter().map(|s| s.p99_ms).fold(1.0_f64, f64::max);
    let bar = (w - 2.0 * pad) / n;
    let y = |v: f64, max: f64| hgt - pad - (v / max) * (hgt - 2.0 * pad);
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{hgt}\" style=\"border:1px solid #ddd\">");
    for (i, sec) in seconds.iter().enumerate() {
        let x = pad + i as f64 * bar;
        let mut base = 0.0;
        for (count, color) in [
            (sec.ok, "#2da44e"),
            (sec.failed, "#cf222e"),
            (sec.unknown, "#d4a72c"),
        ] {
            let top = y(base + count as f64, max_ops);
            let _ = write!(s, "<rect x=\"{x:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"/>", (bar - 1.0).max(1.0), y(base, max_ops) - top);
            base += count as f64;
        }
    }
    let points: Vec<String> = seconds
        .iter()
        .enumerate()
        .map(|(i, sec)| {
            format!(
                "{:.1},{:.1}",
                pad + (i as f64 + 0.5) * bar,
                y(sec.p99_ms, max_lat)
            )
        })
        .collect();
    let _ = write!(
        s,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#0969da\" stroke-width=\"2\"/>",
        points.join(" ")
    );
    for f in &report.faults {
        let x = pad + (f.at_ms as f64 / 1000.0) * bar;
        let _ = write!(s, "<line x1=\"{x:.1}\" y1=\"{pad}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#cf222e\" stroke-dasharray=\"4\"/>", hgt - pad);
    }
    let _ = write!(
        s,
        "<text x=\"{pad}\" y=\"16\" font-size=\"12\">ops/s (max {max_ops:.0}): ok green, failed red, unknown amber; p99 latency blue (max {max_lat:.0} ms); faults dashed red; one bar per second</text></svg>"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::CheckerResult;
    use crate::drill::report::FaultRecord;
    use crate::recorder::OpCounts;

    #[test]
    fn renders_verdicts_faults_and_escapes_text() {
        let report = DrillReport {
            scenario: "site-fire".into(),
            seed: 1,
            commit: "abc".into(),
            sites: 3,
            nodes_per_site: 1,
            duration_ms: 2000,
            ops: OpCounts {
                ok: 10,
                failed: 1,
                unknown: 2,
            },
            faults: vec![FaultRecord {
                kind: "kill -9 site".into(),
                target: "site-1".into(),
                at_ms: 900,
                verified: true,
            }],
            timeline: vec![],
            checkers: vec![CheckerResult {
                checker: "linearizability".into(),
                verdict: Verdict::Fail {
                    details: vec!["read <stale>".into()],
                },
                summary: "x".into(),
            }],
            seconds: vec![SecondStats {
                second: 0,
                ok: 5,
                failed: 1,
                unknown: 0,
                p50_ms: 1.0,
                p99_ms: 4.0,
                max_ms: 5.0,
            }],
            rto_ms: Some(500),
            rpo_writes_lost: 0,
            rpo_ms: None,
            restored_to_hlc: None,
            passed: false,
        };
        let page = render(&report);
        assert!(
            page.contains("FAILED") && page.contains("kill -9 site") && page.contains("500 ms")
        );
        assert!(
            page.contains("read &lt;stale&gt;"),
            "details must be escaped"
        );
        assert!(page.contains("<svg") && page.contains("<rect"));
    }
}
