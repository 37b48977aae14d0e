//! The series of one rendered exposition, for pushing: parsed from the very text `/metrics`
//! serves, so what is pushed is what a scrape sees (names, labels, cardinality controls,
//! histograms as `_bucket`/`_sum`/`_count` series, as Prometheus stores a scraped classic one).
//!
//! The text is the agent's own, but the parser treats it as outside data (label values come
//! from container names and labels): a line it cannot read is skipped and counted, never a panic.

/// One sample line: the metric name first among the labels, as remote write wants
/// (`__name__`), then the labels in the order written (the renderer sorts them).
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Every sample line of `text`; the count of lines that could not be read.
pub fn parse(text: &str) -> (Vec<Series>, u64) {
    let mut out = Vec::new();
    let mut bad = 0;
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Some(s) => out.push(s),
            None => bad += 1,
        }
    }
    (out, bad)
}

fn parse_line(line: &str) -> Option<Series> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut labels = vec![("__name__".to_string(), name.to_string())];
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        rest = parse_labels(r, &mut labels)?;
    }
    // A timestamp after the value (none in nodetel's exposition) is ignored: the push stamps
    // each sample with its pass's time.
    let value = rest.split_ascii_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    Some(Series { labels, value })
}

/// Reads `name="value",...}` and returns what follows the `}`.
fn parse_labels<'a>(mut s: &'a str, labels: &mut Vec<(String, String)>) -> Option<&'a str> {
    loop {
        s = s.trim_start_matches(',');
        if let Some(rest) = s.strip_prefix('}') {
            return Some(rest);
        }
        let eq = s.find('=')?;
        let name = &s[..eq];
        let mut chars = s[eq + 1..].strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    _ => return None,
                },
                c => value.push(c),
            }
        };
        labels.push((name.to_string(), value));
        // Past `name="` (eq + 2 bytes) and the value's closing quote.
        s = &s[eq + 2 + end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(s: &Series) -> Vec<(&str, &str)> {
        s.labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn sample_lines_with_escapes() {
        let text = "# HELP x y\n# TYPE x counter\nx 1\n\
                    container_cpu_usage_seconds_total{cpu=\"total\",id=\"/we\\\"ird\\\\name\\n\",name=\"\"} 2.5\n\
                    h_bucket{le=\"+Inf\"} 3\nnan NaN\ninf +Inf 1700000000000\n";
        let (series, bad) = parse(text);
        assert_eq!(bad, 0);
        assert_eq!(series.len(), 5);
        assert_eq!(labels(&series[0]), [("__name__", "x")]);
        assert_eq!(series[0].value, 1.0);
        assert_eq!(
            labels(&series[1]),
            [
                ("__name__", "container_cpu_usage_seconds_total"),
                ("cpu", "total"),
                ("id", "/we\"ird\\name\n"),
                ("name", "")
            ]
        );
        assert_eq!(series[1].value, 2.5);
        assert_eq!(labels(&series[2])[1], ("le", "+Inf"));
        assert!(series[3].value.is_nan());
        assert_eq!(series[4].value, f64::INFINITY);
    }

    #[test]
    fn unreadable_lines_are_counted() {
        let (series, bad) = parse("ok 1\n{a=\"b\"} 1\nx{a=\"b} 1\nx{a=\"\\q\"} 1\nx 1.2.3\nx\n");
        assert_eq!(series.len(), 1);
        assert_eq!(bad, 5);
    }

    /// The agent's whole golden exposition reads back line for line.
    #[test]
    fn the_golden_exposition_reads_back() {
        let text = std::fs::read_to_string(crate::testutil::testdata("golden/exposition.prom"))
            .expect("golden");
        let (series, bad) = parse(&text);
        let samples = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
        assert_eq!((series.len(), bad), (samples, 0));
    }

    /// Property: no line, however garbled, panics the parser.
    #[test]
    fn any_bytes_are_handled() {
        let mut rng = crate::testutil::Rng::new(21);
        for _ in 0..3000 {
            let b = rng.bytes_from(b"ab_{}=\",\\n 1.e+#\n", 60);
            let _ = parse(&String::from_utf8_lossy(&b));
        }
    }
}
