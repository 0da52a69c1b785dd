//! Starting a server: storage, Raft, background tasks and the gRPC listener.

use crate::agents::session::AgentApi;
use crate::api::Api;
use crate::auth::AuthLayer;
use crate::config::Settings;
use crate::internal::Internal;
use crate::metrics::GrpcMetricsLayer;
use crate::network::Peers;
use crate::node::Node;
use andromede_api::v1::{
    agent_service_server::AgentServiceServer, cluster_service_server::ClusterServiceServer,
    compute_service_server::ComputeServiceServer, event_service_server::EventServiceServer,
    identity_service_server::IdentityServiceServer,
    infrastructure_service_server::InfrastructureServiceServer,
    internal_service_server::InternalServiceServer,
    placement_service_server::PlacementServiceServer, volume_service_server::VolumeServiceServer,
};
use andromede_store::{LogStore, StateMachine};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Settings with defaults applied.
pub struct Resolved {
    pub node_id: u64,
    pub listen: String,
    pub advertise: String,
    pub data_dir: PathBuf,
    /// Where the first cloud-admin token is (or will be) when this server initializes the cluster.
    pub bootstrap_token_file: PathBuf,
    /// Over plaintext only: the secret servers call each other with.
    pub cluster_token: Option<String>,
    pub data_key_file: PathBuf,
    /// `None`: plaintext, asked for with --insecure-plaintext.
    pub tls: Option<crate::tls::Tls>,
    pub metrics_listen: Option<String>,
    pub init: bool,
    pub raft: openraft::Config,
    pub strategy: andromede_placement::Strategy,
    pub host_ttl: std::time::Duration,
    pub max_concurrent_streams: u32,
    pub request_timeout: std::time::Duration,
    pub max_watches: usize,
    pub enrollments_per_sec: u32,
}

pub fn resolve(s: Settings) -> anyhow::Result<Resolved> {
    let node_id = s.node_id.unwrap_or(1);
    anyhow::ensure!(node_id > 0, "node_id must be greater than 0");
    let listen = s.listen.unwrap_or_else(|| "127.0.0.1:7400".into());
    let init = s.init.unwrap_or(false);
    let data_dir = s
        .data_dir
        .unwrap_or_else(|| PathBuf::from("andromede-data"));
    let heartbeat = s.heartbeat_ms.unwrap_or(50);
    let election = s.election_timeout_ms.unwrap_or(250);
    let raft = openraft::Config {
        cluster_name: "andromede".into(),
        heartbeat_interval: heartbeat,
        election_timeout_min: election,
        election_timeout_max: election * 2,
        max_payload_entries: 1000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(
            s.snapshot_every.unwrap_or(10_000),
        ),
        max_in_snapshot_log_to_keep: s.keep_logs.unwrap_or(1000),
        install_snapshot_timeout: 2000,
        ..Default::default()
    }
    .validate()
    .context("invalid Raft settings")?;
    let strategy = match s.strategy.as_deref() {
        None | Some("spread") => andromede_placement::Strategy::Spread,
        Some("pack") => andromede_placement::Strategy::Pack,
        Some(other) => anyhow::bail!("strategy must be spread or pack, not {other:?}"),
    };
    let advertise = s.advertise.clone().unwrap_or_else(|| listen.clone());
    let tls = crate::tls::resolve(
        crate::tls::Choice {
            cert: s.tls_cert.as_deref(),
            key: s.tls_key.as_deref(),
            ca: s.tls_ca.as_deref(),
            ca_key: s.tls_ca_key.as_deref(),
            plaintext: s.insecure_plaintext.unwrap_or(false),
            host_cert_ttl: {
                let t = s.host_cert_ttl_secs.unwrap_or(30 * 86_400);
                anyhow::ensure!(
                    (30..=366 * 86_400).contains(&t),
                    "host_cert_ttl_secs must be between 30 and 31622400"
                );
                std::time::Duration::from_secs(t)
            },
        },
        &data_dir,
        init,
        node_id,
        &[&listen, &advertise],
    )?;
    // Servers over TLS prove themselves with their certificates; the shared secret is for
    // plaintext only.
    let cluster_token = match (&tls, s.cluster_token.filter(|t| !t.is_empty())) {
        (Some(_), _) => None,
        (None, Some(t)) => Some(t),
        (None, None) => Some(crate::bootstrap::cluster_token(&data_dir, init)?),
    };
    Ok(Resolved {
        tls,
        node_id,
        advertise: s.advertise.unwrap_or_else(|| listen.clone()),
        listen,
        bootstrap_token_file: s
            .bootstrap_token_file
            .unwrap_or_else(|| data_dir.join(crate::bootstrap::TOKEN_FILE)),
        data_key_file: s
            .data_key_file
            .unwrap_or_else(|| data_dir.join(crate::bootstrap::DATA_KEY_FILE)),
        data_dir,
        cluster_token,
        metrics_listen: s.metrics_listen,
        init,
        raft,
        strategy,
        host_ttl: {
            let ttl = s.host_ttl_secs.unwrap_or(10);
            anyhow::ensure!(
                (2..=3600).contains(&ttl),
                "host_ttl_secs must be between 2 and 3600"
            );
            std::time::Duration::from_secs(ttl)
        },
        max_concurrent_streams: {
            let n = s.max_concurrent_streams.unwrap_or(256);
            anyhow::ensure!(
                (1..=100_000).contains(&n),
                "max_concurrent_streams must be between 1 and 100000"
            );
            n
        },
        request_timeout: {
            let t = s.request_timeout_secs.unwrap_or(30);
            anyhow::ensure!(
                (1..=3600).contains(&t),
                "request_timeout_secs must be between 1 and 3600"
            );
            std::time::Duration::from_secs(t)
        },
        enrollments_per_sec: {
            let n = s.enrollments_per_sec.unwrap_or(5);
            anyhow::ensure!(
                (1..=1_000_000).contains(&n),
                "enrollments_per_sec must be between 1 and 1000000"
            );
            n
        },
        max_watches: {
            let n = s.max_watches.unwrap_or(crate::node::DEFAULT_MAX_WATCHES);
            anyhow::ensure!(
                (1..=1_000_000).contains(&n),
                "max_watches must be between 1 and 1000000"
            );
            n
        },
    })
}

/// Opens storage, starts Raft and returns the node (not yet serving).
pub async fn start_node(r: &Resolved) -> anyhow::Result<Arc<Node>> {
    std::fs::create_dir_all(&r.data_dir)
        .with_context(|| format!("creating data dir {}", r.data_dir.display()))?;
    let key = Arc::new(crate::sealed::DataKey::load(&r.data_key_file, r.init)?);
    let log = LogStore::open(&r.data_dir.join("raft.db"))
        .await
        .context("opening the Raft log")?;
    let sm = StateMachine::open(&r.data_dir.join("state"))
        .await
        .context("opening the state machine")?;
    let shared = sm.shared();
    let peers = Peers::new(r.cluster_token.clone(), r.tls.clone());
    let raft =
        andromede_store::Raft::new(r.node_id, Arc::new(r.raft.clone()), peers.clone(), log, sm)
            .await
            .context("starting Raft")?;
    if r.init && !raft.is_initialized().await? {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            r.node_id,
            openraft::BasicNode {
                addr: r.advertise.clone(),
            },
        );
        raft.initialize(nodes)
            .await
            .context("initializing the cluster")?;
        tracing::info!(node_id = r.node_id, "initialized a new single-node cluster");
    }
    let mut node = Node::new(r.node_id, r.advertise.clone(), raft, shared, peers, key);
    node.tls = r.tls.clone();
    node.strategy = r.strategy;
    node.agents = crate::agents::Agents::new(r.host_ttl);
    node.limit_watches(r.max_watches);
    Ok(Arc::new(node))
}

/// Serves the gRPC API until `shutdown` resolves, then stops Raft cleanly.
pub async fn serve(
    r: &Resolved,
    node: Arc<Node>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    if let Some(m) = &r.metrics_listen {
        crate::metrics::install(m.parse().context("metrics_listen")?)?;
        tracing::info!(addr = %m, "metrics endpoint up");
    }
    tokio::spawn(crate::metrics::raft_gauges(node.raft.clone()));
    tokio::spawn(crate::simulator::run(node.clone()));
    tokio::spawn(crate::agents::sweep(node.clone(), node.agents.clone()));
    tokio::spawn(crate::agents::write_reports(
        node.clone(),
        node.agents.clone(),
    ));
    tokio::spawn(crate::agents::route_events(
        node.clone(),
        node.agents.clone(),
    ));

    if r.init {
        tokio::spawn(crate::bootstrap::first_token(
            node.clone(),
            r.bootstrap_token_file.clone(),
        ));
    }
    let api = Api { node: node.clone() };
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ComputeServiceServer<Api>>()
        .await;
    // Reflection lists the public services only: the agent and internal services are for
    // certificate holders, not for API clients to discover.
    let mut reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(andromede_api::FILE_DESCRIPTOR_SET);
    for name in andromede_auth::access::PUBLIC_SERVICES {
        reflection = reflection.with_service_name(*name);
    }
    let reflection = reflection.build_v1().context("reflection")?;
    let internal = InternalServiceServer::new(Internal { node: node.clone() })
        .max_decoding_message_size(1 << 30)
        .max_encoding_message_size(1 << 30);
    let addr = r
        .listen
        .parse()
        .with_context(|| format!("listen address {:?}", r.listen))?;
    tracing::info!(%addr, node_id = r.node_id, data_dir = %r.data_dir.display(), "serving");
    let mut builder = tonic::transport::Server::builder();
    if let Some(t) = &r.tls {
        // The chain ends with the CA so an agent holding only the join token's pin can find
        // it on first contact. Client certificates are asked for, not required: API clients
        // have tokens; servers and hosts present certificates, which the authorization
        // layer requires for their services.
        let chain = format!("{}\n{}", t.cert.trim_end(), t.ca);
        builder = builder
            .tls_config(
                tonic::transport::ServerTlsConfig::new()
                    .identity(tonic::transport::Identity::from_pem(chain, &t.key))
                    .client_ca_root(tonic::transport::Certificate::from_pem(&t.ca))
                    .client_auth_optional(true),
            )
            .context("the TLS certificate and key")?;
    }
    builder
        // Bounds what one connection can hold open; the timeout bounds a call until its
        // response starts, so streams (watches, agents) run on after it.
        .max_concurrent_streams(Some(r.max_concurrent_streams))
        .timeout(r.request_timeout)
        .layer(GrpcMetricsLayer)
        // Every call passes the one authorization table before any handler runs.
        .layer(AuthLayer {
            node: node.clone(),
            cluster_token: r.cluster_token.clone().map(Arc::new),
        })
        .add_service(health)
        .add_service(reflection)
        .add_service(internal)
        // Agents enroll with a join token, then stream with their host certificate.
        .add_service(AgentServiceServer::new(AgentApi {
            node: node.clone(),
            agents: node.agents.clone(),
            enrollments: crate::agents::session::enrollment_limit(
                r.enrollments_per_sec,
                r.enrollments_per_sec.saturating_mul(4),
            ),
        }))
        .add_service(InfrastructureServiceServer::new(api.clone()))
        .add_service(IdentityServiceServer::new(api.clone()))
        .add_service(ComputeServiceServer::new(api.clone()))
        .add_service(VolumeServiceServer::new(api.clone()))
        .add_service(PlacementServiceServer::new(api.clone()))
        .add_service(EventServiceServer::new(api.clone()))
        .add_service(ClusterServiceServer::new(api))
        .serve_with_shutdown(addr, async {
            shutdown.await;
            node.agents.close_all();
        })
        .await
        .context("gRPC server")?;
    let _ = node.raft.shutdown().await;
    Ok(())
}
