//! A small in-process metrics registry: counters and gauges with labels, and latency
//! histograms, rendered in the Prometheus text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds of the latency histogram buckets, in seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

struct Family {
    help: &'static str,
    kind: &'static str,
}

/// The registry. Cheap enough for the request path: one short lock per update.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, Labels), f64>>,
    histograms: Mutex<BTreeMap<(&'static str, Labels), Histogram>>,
    families: Mutex<BTreeMap<&'static str, Family>>,
}

impl Metrics {
    fn describe(&self, name: &'static str, help: &'static str, kind: &'static str) {
        let mut families = self.families.lock().expect("metrics lock");
        families.entry(name).or_insert(Family { help, kind });
    }

    /// Adds `by` to a counter.
    pub fn inc(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        by: u64,
    ) {
        self.describe(name, help, "counter");
        let key = (name, own(labels));
        *self
            .counters
            .lock()
            .expect("metrics lock")
            .entry(key)
            .or_default() += by as f64;
    }

    /// Sets a gauge.
    pub fn set(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        value: f64,
    ) {
        self.describe(name, help, "gauge");
        let key = (name, own(labels));
        self.counters
            .lock()
            .expect("metrics lock")
            .insert(key, value);
    }

    /// Records one observation, in seconds.
    pub fn observe(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        seconds: f64,
    ) {
        self.describe(name, help, "histogram");
        let key = (name, own(labels));
        let mut histograms = self.histograms.lock().expect("metrics lock");
        let histogram = histograms.entry(key).or_insert_with(|| Histogram {
            buckets: vec![0; LATENCY_BUCKETS.len()],
            ..Histogram::default()
        });
        for (slot, bound) in histogram.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= *bound {
                *slot += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// The current value of a counter or gauge (for tests and status).
    pub fn value(&self, name: &'static str, labels: &[(&'static str, &str)]) -> f64 {
        let key = (name, own(labels));
        self.counters
            .lock()
            .expect("metrics lock")
            .get(&key)
            .copied()
            .unwrap_or(0.0)
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let families = self.families.lock().expect("metrics lock");
        let counters = self.counters.lock().expect("metrics lock");
        let histograms = self.histograms.lock().expect("metrics lock");
        let mut out = String::new();
        for (name, family) in families.iter() {
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {}", family.kind);
            for ((_, labels), value) in counters
                .range((*name, Vec::new())..)
                .take_while(|((n, _), _)| n == name)
            {
                let _ = writeln!(out, "{name}{} {value}", render_labels(labels, None));
            }
            for ((_, labels), histogram) in histograms
                .range((*name, Vec::new())..)
                .take_while(|((n, _), _)| n == name)
            {
                for (count, bound) in histogram.buckets.iter().zip(LATENCY_BUCKETS) {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {count}",
                        render_labels(labels, Some(&bound.to_string()))
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    render_labels(labels, Some("+Inf")),
                    histogram.count
                );
                let _ = writeln!(
                    out,
                    "{name}_sum{} {}",
                    render_labels(labels, None),
                    histogram.sum
                );
                let _ = writeln!(
                    out,
                    "{name}_count{} {}",
                    render_labels(labels, None),
                    histogram.count
                );
            }
        }
        out
    }
}

fn own(labels: &[(&'static str, &str)]) -> Labels {
    labels.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

fn render_labels(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}=\"{}\"",
                v.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )
        })
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counter_and_histogram() {
        let metrics = Metrics::default();
        metrics.inc(
            "bouncewatch_events_total",
            "Events stored.",
            &[("status", "bounce")],
            2,
        );
        metrics.observe(
            "bouncewatch_request_seconds",
            "Latency.",
            &[("route", "hook")],
            0.003,
        );
        let text = metrics.render();
        assert!(text.contains("# TYPE bouncewatch_events_total counter"));
        assert!(text.contains("bouncewatch_events_total{status=\"bounce\"} 2"));
        assert!(text.contains("bouncewatch_request_seconds_bucket{route=\"hook\",le=\"0.005\"} 1"));
        assert!(text.contains("bouncewatch_request_seconds_count{route=\"hook\"} 1"));
    }
}
