//! A service's own Prometheus recorder: series registered by name and labels, rendered as the
//! Prometheus text format on demand.

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// Histogram buckets, in seconds, for every latency series: from half a millisecond (a start on
/// a quiet agent) to five minutes (a task pending for a slot).
pub const LATENCY_BUCKETS: [f64; 17] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

const METADATA: Metadata<'static> = Metadata::new("switchyard", Level::INFO, None);

/// One service's metrics. Cheap to share behind an `Arc`; handles it gives out stay valid.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty recorder whose histograms use [`LATENCY_BUCKETS`].
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .expect("the latency buckets are a non-empty constant")
            .build_recorder();
        let handle = recorder.handle();
        Self { recorder, handle }
    }

    /// The counter `name` with `labels`, registered on first use.
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.recorder.register_counter(&key(name, labels), &METADATA)
    }

    /// The gauge `name` with `labels`, registered on first use.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.recorder.register_gauge(&key(name, labels), &METADATA)
    }

    /// The histogram `name` with `labels`, registered on first use.
    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        self.recorder.register_histogram(&key(name, labels), &METADATA)
    }

    /// Sets the `# HELP` line of a counter.
    pub fn describe_counter(&self, name: &'static str, help: &'static str) {
        self.recorder.describe_counter(KeyName::from_const_str(name), None, SharedString::const_str(help));
    }

    /// Sets the `# HELP` line of a gauge.
    pub fn describe_gauge(&self, name: &'static str, help: &'static str) {
        self.recorder.describe_gauge(KeyName::from_const_str(name), None, SharedString::const_str(help));
    }

    /// Sets the `# HELP` line of a histogram measured in seconds.
    pub fn describe_seconds(&self, name: &'static str, help: &'static str) {
        self.recorder.describe_histogram(
            KeyName::from_const_str(name),
            Some(Unit::Seconds),
            SharedString::const_str(help),
        );
    }

    /// Every series in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histogram samples into their buckets; [`Metrics::render`] does it too, this
    /// keeps memory flat between scrapes that are far apart.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels.iter().map(|(label, value)| Label::new(*label, (*value).to_owned())).collect();
    Key::from_parts(name, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_render_with_help_labels_and_buckets() {
        let metrics = Metrics::new();
        metrics.describe_counter("switchyard_test_total", "Things counted.");
        metrics.counter("switchyard_test_total", &[("agent", "server-a"), ("outcome", "accepted")]).increment(2);
        metrics.gauge("switchyard_test_running", &[]).set(3.0);
        metrics.describe_seconds("switchyard_test_seconds", "How long things took.");
        metrics.histogram("switchyard_test_seconds", &[]).record(0.003);
        let text = metrics.render();
        assert!(text.contains("# HELP switchyard_test_total Things counted."), "{text}");
        assert!(text.contains("switchyard_test_total{agent=\"server-a\",outcome=\"accepted\"} 2"), "{text}");
        assert!(text.contains("switchyard_test_running 3"), "{text}");
        assert!(text.contains("# TYPE switchyard_test_seconds histogram"), "{text}");
        assert!(text.contains("switchyard_test_seconds_bucket{le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("switchyard_test_seconds_count 1"), "{text}");
    }

    #[test]
    fn two_recorders_keep_their_series_apart() {
        let (first, second) = (Metrics::new(), Metrics::new());
        first.counter("switchyard_first_total", &[]).increment(1);
        assert!(!second.render().contains("switchyard_first_total"));
    }
}
