//! Prometheus metrics: gRPC request rates and latencies by method and status, Raft indexes,
//! placements and their failures by filter.

use andromede_placement::Explanation;
use prost::Message;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Starts the Prometheus endpoint (`GET /metrics` on any path) on `addr`.
pub fn install(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()?;
    Ok(())
}

pub fn placement_failed(e: &Explanation) {
    metrics::counter!("andromede_placement_failures_total").increment(1);
    for f in e.filters.iter().filter(|f| f.excluded > 0) {
        metrics::counter!("andromede_placement_excluded_hosts_total", "filter" => f.name)
            .increment(u64::from(f.excluded));
    }
}

/// Publishes Raft progress every second.
pub async fn raft_gauges(raft: andromede_store::Raft) {
    let mut t = tokio::time::interval(Duration::from_secs(1));
    loop {
        t.tick().await;
        let m = raft.metrics().borrow().clone();
        metrics::gauge!("andromede_raft_term").set(m.current_term as f64);
        metrics::gauge!("andromede_raft_last_log_index").set(m.last_log_index.unwrap_or(0) as f64);
        metrics::gauge!("andromede_raft_applied_index")
            .set(m.last_applied.map(|l| l.index).unwrap_or(0) as f64);
        metrics::gauge!("andromede_raft_snapshot_index")
            .set(m.snapshot.map(|l| l.index).unwrap_or(0) as f64);
        metrics::gauge!("andromede_raft_is_leader").set(if m.current_leader == Some(m.id) {
            1.0
        } else {
            0.0
        });
    }
}

/// The label for requests to a path that is no method this server serves.
pub const UNKNOWN_METHOD: &str = "unknown";

/// Every `/package.Service/Method` path the listener serves, read from the descriptors of the
/// contract, health checking and reflection.
static KNOWN_METHODS: std::sync::LazyLock<HashSet<String>> = std::sync::LazyLock::new(|| {
    let sets = [
        andromede_api::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    ];
    let mut known = HashSet::new();
    for bytes in sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(bytes) else {
            tracing::error!(
                "a built-in descriptor set does not decode; its methods count as unknown"
            );
            continue;
        };
        for file in &set.file {
            for svc in &file.service {
                for m in &svc.method {
                    known.insert(format!("/{}.{}/{}", file.package(), svc.name(), m.name()));
                }
            }
        }
    }
    known
});

/// The `method` label of a request path: the path itself when it names a served method, else
/// one `unknown` bucket. The path comes before authentication, so labelling by it directly
/// would let any client create series without bound.
pub fn method_label(path: &str) -> &'static str {
    KNOWN_METHODS
        .get(path)
        .map_or(UNKNOWN_METHOD, |m| m.as_str())
}

/// Tower layer counting gRPC calls by method and status code.
#[derive(Clone, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = method_label(req.uri().path());
        let started = Instant::now();
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let res = inner.call(req).await;
            // Errors come back trailers-only, so their status is in the headers; success
            // puts 0 in the trailers.
            let code = match &res {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("0")
                    .to_string(),
                Err(_) => "transport".to_string(),
            };
            metrics::counter!("andromede_grpc_requests_total", "method" => method, "code" => code)
                .increment(1);
            metrics::histogram!("andromede_grpc_request_seconds", "method" => method)
                .record(started.elapsed().as_secs_f64());
            res
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_get_their_own_label() {
        assert_eq!(
            method_label("/andromede.v1.ComputeService/CreateInstance"),
            "/andromede.v1.ComputeService/CreateInstance"
        );
        assert_eq!(
            method_label("/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        assert_eq!(
            method_label("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        );
        for junk in [
            "/andromede.v1.ComputeService/Nope",
            "/x",
            "",
            "/andromede.v1.ComputeService/CreateInstance/extra",
        ] {
            assert_eq!(method_label(junk), UNKNOWN_METHOD, "{junk}");
        }
    }
}
