//! One function sets up logging and tracing for the whole process: human-readable
//! lines on a terminal, one JSON object per line with `--log-format json`, and, when
//! `tracing.otlp_endpoint` is set, every span exported to an OpenTelemetry collector
//! over OTLP/HTTP (protobuf). Request spans carry the request id, so every line logged
//! while serving a request names it. With no endpoint configured no exporter exists
//! and no span is ever converted: the export costs nothing.

use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat, TracingConfig};

/// Keeps the span exporter alive; [`Telemetry::shutdown`] flushes it at exit.
#[derive(Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered (at most a few seconds), at shutdown.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            // The exporter's thread blocks while it flushes; keep the runtime free.
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}

/// The OTLP exporter's HTTP client: the process's async reqwest client, driven on
/// the tokio runtime that was current at start-up (the SDK's batch exporter runs on
/// its own thread, without a reactor).
#[derive(Debug)]
struct RuntimeHttpClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for RuntimeHttpClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let request = reqwest::Request::try_from(request.map(reqwest::Body::from))?;
        let client = self.client.clone();
        let response = self
            .runtime
            .spawn(async move {
                let response = client.execute(request).await?;
                let status = response.status();
                let body = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, body))
            })
            .await??;
        let (status, body) = response;
        Ok(http::Response::builder().status(status).body(body)?)
    }
}

/// The collector URL for traces: `…/v1/traces` is added to a bare base URL.
pub fn traces_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    if trimmed.ends_with("/v1/traces") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v1/traces")
    }
}

fn tracer_provider(config: &TracingConfig, endpoint: &str) -> Result<SdkTracerProvider, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot build the OTLP HTTP client: {e}"))?;
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| "OTLP export needs a tokio runtime".to_owned())?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces_url(endpoint))
        .with_http_client(RuntimeHttpClient { client, runtime })
        .build()
        .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log.filter`.
/// Calling it again (tests start many apps in one process) keeps the first one.
pub fn init(log: &LogConfig, tracing_config: &TracingConfig) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = match log.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(std::io::stdout().is_terminal())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_target(false)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    let (provider, problem) = match tracing_config.otlp_endpoint.as_deref() {
        Some(endpoint) => match tracer_provider(tracing_config, endpoint) {
            Ok(provider) => (Some(provider), None),
            Err(problem) => (None, Some(problem)),
        },
        None => (None, None),
    };
    let export = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("mcp-gateway")));
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .with(export)
        .try_init()
        .is_ok();
    if let Some(problem) = problem {
        tracing::error!("{problem}; spans are not exported");
    } else if installed && let Some(endpoint) = &tracing_config.otlp_endpoint {
        tracing::info!(endpoint = %traces_url(endpoint), "exporting spans over OTLP/HTTP");
    }
    Telemetry {
        provider: provider.filter(|_| installed),
    }
}

#[cfg(test)]
mod tests {
    use super::traces_url;

    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }
}
