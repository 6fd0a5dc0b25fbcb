//! The benchmarks behind `sirocco-bench`: [`stack`] (the whole server loop in memory; with
//! [`engines`], N of those loops at once, one per pinned thread), [`driver`] (packet-rate
//! limits of each frame backend), [`loss`] (goodput through random loss against the Mathis
//! bound) and [`synflood`] (SYNs absorbed and legitimate connections served during a SYN
//! flood), plus [`plot`] for an SVG of the first three.
//!
//! Every run produces a [`Row`]: a scenario name, the numbers a table prints, and the JSON
//! object `--json` prints (one per line). Runs are bounded by counts and by time, and each
//! stack run happens in a child process of its own so its memory can be measured alone.

/// Prints one line of results, as `println!` does, except that when the reader has gone
/// (`sirocco-bench loss | head -3`) the process exits quietly with status 0, as a Unix filter
/// does, instead of panicking; any other write error exits with status 1 and says why.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::bench::emit(format_args!($($arg)*))
    };
}

pub mod driver;
pub mod engines;
pub mod loss;
pub mod plot;
pub mod stack;
pub mod synflood;

/// One benchmark result: printed as a table row, or as one JSON object per line.
#[derive(Debug, Clone)]
pub struct Row {
    /// The JSON object; always has the fields its bench documents.
    pub json: serde_json::Value,
}

impl Row {
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.json.get(key).and_then(serde_json::Value::as_f64)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.json.get(key).and_then(serde_json::Value::as_str)
    }

    /// A median row's `[least, most]` of `key` (its `<key>_range`) as `least..most`, with
    /// `decimals` decimals; empty when the row has none.
    pub fn range_text(&self, key: &str, decimals: usize) -> String {
        let values: Vec<f64> = self
            .json
            .get(format!("{key}_range"))
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_f64)
            .collect();
        match values[..] {
            [least, most] => format!("{least:.decimals$}..{most:.decimals$}"),
            _ => String::new(),
        }
    }
}

/// The process's resident set size in bytes (Linux `/proc/self/statm`), or 0 elsewhere.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// `x` rounded to two decimals, for JSON.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `x` rounded to three decimals, for ratios.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The summary of repeated runs: `fields` (which say what was repeated) with `"median":
/// true` and `rounds`, and for each of `keys` the runs report, its median over `runs` and its
/// `[least, most]` range in `<key>_range`. A key no run reports is left out.
pub fn median_row(mut fields: serde_json::Value, runs: &[&Row], keys: &[&str]) -> Row {
    if let Some(map) = fields.as_object_mut() {
        map.insert("median".into(), true.into());
        map.insert("rounds".into(), runs.len().into());
        for &key in keys {
            let mut values: Vec<f64> = runs.iter().filter_map(|r| r.get_f64(key)).collect();
            values.sort_by(f64::total_cmp);
            let Some((&least, &most)) = values.first().zip(values.last()) else {
                continue;
            };
            let middle = values.len() / 2;
            let median = if values.len() % 2 == 1 {
                values[middle]
            } else {
                (values[middle - 1] + values[middle]) / 2.0
            };
            map.insert(key.into(), round3(median).into());
            map.insert(format!("{key}_range"), serde_json::json!([least, most]));
        }
    }
    Row { json: fields }
}

/// See `outln!`.
pub fn emit(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(line)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(error) = written {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("sirocco-bench: writing to stdout: {error}");
        std::process::exit(1);
    }
}
