//! keysmith's metrics, exported through OpenTelemetry (see `telemetry`).
//!
//! The Verify path pays for one histogram record; everything else is read
//! off state the server keeps anyway: gauges by callback at export time,
//! per-code call counts from the usage flusher (so they trail by at most a
//! flush interval).

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram, ObservableCounter, ObservableGauge},
};

use crate::{
    domain::Timestamp,
    domain::verdict::Code,
    index::{KeyIndex, ReplicaState},
    watch::Watcher,
};

/// Instruments written from request and task code.
#[derive(Clone)]
pub struct Metrics {
    pub verify_latency: Histogram<f64>,
    verify_calls: Counter<u64>,
    pub flush_duration: Histogram<f64>,
    /// Public listener answers, by route and HTTP status.
    public_requests: Counter<u64>,
    /// Pending webhook deliveries, as the sender last counted them.
    pub outbox_depth: Arc<AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let meter = crate::telemetry::meter();
        Self {
            verify_latency: meter
                .f64_histogram("keysmith.verify.duration")
                .with_unit("s")
                .with_description("Verify and ext_authz Check handler time")
                .build(),
            verify_calls: meter
                .u64_counter("keysmith.verify.calls")
                .with_description("Verify calls by outcome code, counted at each usage flush")
                .build(),
            flush_duration: meter
                .f64_histogram("keysmith.usage.flush.duration")
                .with_unit("s")
                .build(),
            public_requests: meter
                .u64_counter("keysmith.public.requests")
                .with_description("public listener answers, by route and HTTP status")
                .build(),
            outbox_depth: Arc::default(),
        }
    }
}

impl Metrics {
    /// One answer of the public listener: `route` is `github`, `revoke` or
    /// `other`.
    pub fn count_public(&self, route: &'static str, status: u16) {
        self.public_requests.add(
            1,
            &[
                KeyValue::new("route", route),
                KeyValue::new("status", i64::from(status)),
            ],
        );
    }

    pub fn count_calls(&self, code: Code, n: u64) {
        if n > 0 {
            let name = format!("{code:?}");
            self.verify_calls.add(n, &[KeyValue::new("code", name)]);
        }
    }
}

/// Gauges read by callback; kept alive for the server's lifetime.
pub struct Gauges(
    #[allow(dead_code)] Vec<ObservableGauge<i64>>,
    #[allow(dead_code)] ObservableCounter<u64>,
);

impl Gauges {
    pub fn register(
        index: Arc<KeyIndex>,
        replica: Arc<ReplicaState>,
        watcher: Watcher,
        metrics: &Metrics,
    ) -> Self {
        let meter = crate::telemetry::meter();
        let size = index.clone();
        let legacy = index.clone();
        let applied = index;
        let stale = replica.clone();
        let depth = metrics.outbox_depth.clone();
        let legacy = meter
            .u64_observable_counter("keysmith.verify.legacy")
            .with_description(
                "calls with keys of a legacy format, by keyspace, format and outcome \
                 (found: the key was found; retired: refused as FORMAT_RETIRED)",
            )
            .with_callback(move |o| {
                for f in legacy.legacy_use() {
                    for (outcome, n) in [
                        ("found", f.counts.found.load(Ordering::Relaxed)),
                        ("retired", f.counts.retired.load(Ordering::Relaxed)),
                    ] {
                        o.observe(
                            n,
                            &[
                                KeyValue::new("keyspace", f.keyspace.to_string()),
                                KeyValue::new("format", f.format.to_string()),
                                KeyValue::new("outcome", outcome),
                            ],
                        );
                    }
                }
            })
            .build();
        Self(
            vec![
                meter
                    .i64_observable_gauge("keysmith.index.keys")
                    .with_callback(move |o| o.observe(size.len() as i64, &[]))
                    .build(),
                meter
                    .i64_observable_gauge("keysmith.feed.applied_seq")
                    .with_callback(move |o| o.observe(applied.applied_seq(), &[]))
                    .build(),
                meter
                    .i64_observable_gauge("keysmith.feed.staleness")
                    .with_unit("ms")
                    .with_description("time since the index last matched the change log")
                    .with_callback(move |o| {
                        if let Some(s) = stale.staleness(Timestamp::now()) {
                            o.observe(s.as_millis() as i64, &[]);
                        }
                    })
                    .build(),
                meter
                    .i64_observable_gauge("keysmith.feed.stuck_seq")
                    .with_description(
                        "the change-log sequence the feed cannot apply (0: not stuck); \
                     the log names its key and why",
                    )
                    .with_callback(move |o| o.observe(replica.stuck().map_or(0, |s| s.seq), &[]))
                    .build(),
                meter
                    .i64_observable_gauge("keysmith.stream.subscribers")
                    .with_callback(move |o| o.observe(watcher.active() as i64, &[]))
                    .build(),
                meter
                    .i64_observable_gauge("keysmith.webhook.outbox_depth")
                    .with_callback(move |o| o.observe(depth.load(Ordering::Relaxed), &[]))
                    .build(),
            ],
            legacy,
        )
    }
}
