//! Logs, traces and metrics.
//!
//! - Logs go to stderr: pretty on a terminal, JSON otherwise; `RUST_LOG`
//!   filters them.
//! - Traces and metrics are exported over OTLP (HTTP/protobuf) when the
//!   standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or the per-signal
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `…_METRICS_ENDPOINT`) is set and
//!   `OTEL_SDK_DISABLED` is not `true`. Without a collector nothing is
//!   exported and nothing waits.

use std::io::IsTerminal;

use opentelemetry::{KeyValue, global, metrics::Meter, trace::TracerProvider as _};
use opentelemetry_sdk::{Resource, metrics::SdkMeterProvider, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, Layer, fmt, prelude::*};

/// Flushes and stops the exporters when dropped (at the end of `main`).
#[derive(Default)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(t) = self.tracer.take() {
            let _ = t.shutdown();
        }
        if let Some(m) = self.meter.take() {
            let _ = m.shutdown();
        }
    }
}

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty())
}

fn resource() -> Resource {
    Resource::builder()
        .with_service_name("keysmith")
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

pub fn init() -> Telemetry {
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    let any = env_set("OTEL_EXPORTER_OTLP_ENDPOINT");
    let mut telemetry = Telemetry::default();
    if !disabled && (any || env_set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")) {
        match opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => {
                let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter).build();
                let provider = SdkMeterProvider::builder()
                    .with_reader(reader)
                    .with_resource(resource())
                    .build();
                global::set_meter_provider(provider.clone());
                telemetry.meter = Some(provider);
            }
            Err(e) => eprintln!("keysmith: OTLP metrics disabled: {e}"),
        }
    }
    let traces = if !disabled && (any || env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => {
                let provider = SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource())
                    .build();
                let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("keysmith"));
                telemetry.tracer = Some(provider);
                Some(layer)
            }
            Err(e) => {
                eprintln!("keysmith: OTLP traces disabled: {e}");
                None
            }
        }
    } else {
        None
    };

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr, so stdout carries only what a command prints for
    // scripts (an admin token, for instance).
    let logs = if std::io::stderr().is_terminal() {
        fmt::layer().with_writer(std::io::stderr).boxed()
    } else {
        fmt::layer().json().with_writer(std::io::stderr).boxed()
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(traces)
        .init();
    telemetry
}

/// The meter keysmith's instruments hang off; a no-op without a collector.
pub fn meter() -> Meter {
    global::meter("keysmith")
}
