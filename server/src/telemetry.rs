//! Logs and traces: the log subscriber (text or JSON), and the optional OpenTelemetry exporter
//! that sends the same spans to an OTLP/HTTP collector.
//!
//! Spans carry ids only (case, hold, prescription, policy, timer, challenge): every use case is
//! instrumented with `skip_all`, so a new argument never reaches a span by accident. Personal
//! data — names, phones, addresses, codes, card numbers, prescription items — never does.

use crate::config::LogFormat;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// The filter used when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn";

/// The service name spans are exported under.
pub const SERVICE_NAME: &str = "holdfast";

/// How long one export may take before it is given up (the spans are then dropped, never
/// retried: tracing must not hold the service back).
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The path an OTLP/HTTP collector takes traces on.
const TRACES_PATH: &str = "/v1/traces";

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("the OTLP endpoint must be an http:// or https:// URL (got {0:?})")]
    NotHttp(String),
    #[error("the OTLP endpoint is not a URL: {0}")]
    Invalid(#[from] url::ParseError),
    #[error("the OTLP exporter could not be built: {0}")]
    Exporter(String),
    #[error("a log subscriber is already installed")]
    AlreadyInstalled,
}

/// Where traces go: an `http(s)://` collector. A bare base URL (`http://collector:4318`) gets the
/// standard `/v1/traces` path; a URL that already ends in it is used as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpEndpoint(url::Url);

impl OtlpEndpoint {
    pub fn parse(text: &str) -> Result<OtlpEndpoint, TelemetryError> {
        let mut url = url::Url::parse(text)?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(TelemetryError::NotHttp(text.to_owned()));
        }
        if !url.path().ends_with(TRACES_PATH) {
            let base = url.path().trim_end_matches('/').to_owned();
            url.set_path(&format!("{base}{TRACES_PATH}"));
        }
        Ok(OtlpEndpoint(url))
    }

    /// The full URL the exporter posts to.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl std::str::FromStr for OtlpEndpoint {
    type Err = TelemetryError;

    fn from_str(text: &str) -> Result<OtlpEndpoint, TelemetryError> {
        OtlpEndpoint::parse(text)
    }
}

/// Keeps the exporter alive; dropping it flushes the spans not yet sent and stops the exporter.
/// Hold it until the server has stopped.
#[must_use = "dropping the guard stops the trace exporter"]
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether spans are being exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Shutting down exports what is still queued; a collector that is gone costs at
            // most the export timeout.
            if let Err(error) = provider.shutdown() {
                eprintln!("the trace exporter did not flush: {error}");
            }
        }
    }
}

/// A tracer provider that batches spans and posts them, as OTLP protobuf over HTTP, to
/// `endpoint` and nowhere else: the HTTP client follows no redirect and uses no proxy.
pub fn otlp_provider(endpoint: &OtlpEndpoint) -> Result<SdkTracerProvider, TelemetryError> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    // reqwest's blocking client runs a runtime of its own, which cannot be built inside the
    // server's: it is built on a thread of its own.
    let client = std::thread::spawn(|| {
        reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(EXPORT_TIMEOUT)
            .build()
    })
    .join()
    .map_err(|_| TelemetryError::Exporter("the HTTP client's thread panicked".to_owned()))?
    .map_err(|error| TelemetryError::Exporter(error.to_string()))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(endpoint.as_str())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|error| TelemetryError::Exporter(error.to_string()))?;
    let resource = Resource::builder()
        .with_service_name(SERVICE_NAME)
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The layer that turns tracing spans into OpenTelemetry spans of `provider`.
pub fn otlp_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + use<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer(SERVICE_NAME))
}

/// A guard that owns `provider`: dropping it flushes and stops the exporter.
pub fn guard(provider: SdkTracerProvider) -> TelemetryGuard {
    TelemetryGuard {
        provider: Some(provider),
    }
}

/// Installs the process's subscriber: logs to standard output in `format`, filtered by
/// `RUST_LOG` (default [`DEFAULT_FILTER`]), and, with an endpoint, the same spans exported.
pub fn init(
    format: LogFormat,
    otlp: Option<&OtlpEndpoint>,
) -> Result<TelemetryGuard, TelemetryError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // Colour only when standard output, where the logs go, is a terminal: a log written to a
    // file or a pipe stays greppable.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_ansi(ansi).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().boxed(),
    };
    let provider = otlp.map(otlp_provider).transpose()?;
    let traces = provider.as_ref().map(otlp_layer);
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .with(filter)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    if let Some(endpoint) = otlp {
        tracing::info!(endpoint = endpoint.as_str(), "exporting traces over OTLP");
    }
    Ok(TelemetryGuard { provider })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_gets_the_traces_path() {
        let endpoint =
            OtlpEndpoint::parse("http://127.0.0.1:4318").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(endpoint.as_str(), "http://127.0.0.1:4318/v1/traces");
        let nested = OtlpEndpoint::parse("https://collector.example/otel/")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(nested.as_str(), "https://collector.example/otel/v1/traces");
    }

    #[test]
    fn a_full_traces_url_is_kept() {
        let endpoint = OtlpEndpoint::parse("http://127.0.0.1:4318/v1/traces")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(endpoint.as_str(), "http://127.0.0.1:4318/v1/traces");
    }

    #[test]
    fn only_http_and_https_endpoints_are_accepted() {
        for refused in [
            "grpc://127.0.0.1:4317",
            "file:///tmp/traces",
            "unix:/run/otel.sock",
        ] {
            assert!(
                matches!(
                    OtlpEndpoint::parse(refused),
                    Err(TelemetryError::NotHttp(_))
                ),
                "{refused} was accepted"
            );
        }
        assert!(matches!(
            OtlpEndpoint::parse("collector:4318"),
            Err(TelemetryError::NotHttp(_) | TelemetryError::Invalid(_))
        ));
        assert!(OtlpEndpoint::parse("not a url").is_err());
    }
}
