//! The Raft command log protocol. Variants are only ever added, never renumbered or repurposed;
//! an entry from a newer protocol version is refused loudly rather than skipped.

use andromede_api::v1::{
    ApiToken, Datacenter, DatacenterStatus, Flavor, Host, HostState, Image, Instance,
    InstanceState, JoinToken, Project, Quota, Resources, ServerGroup, SovereigntyPolicy, Volume,
    VolumeState,
};
use serde::{Deserialize, Serialize};

/// The protocol version this build writes and understands.
// v3: host orphans and API tokens. v4: host certificates.
pub const PROTOCOL_VERSION: u32 = 4;

/// One log entry's payload: the command plus the proposer's clock, so apply never reads a clock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    pub at_ms: i64,
    pub cmd: Command,
}

impl Envelope {
    pub fn new(at_ms: i64, cmd: Command) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            at_ms,
            cmd,
        }
    }
}

impl std::fmt::Display for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{} {}", self.version, self.cmd.name())
    }
}

/// User intent on an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstanceAction {
    Start,
    Stop,
    Reboot,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeOp {
    Attach,
    Detach,
    Delete,
}

/// Every mutation of the region.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    CreateDatacenter(Datacenter),
    UpdateDatacenter {
        id: String,
        country: Option<String>,
        operator: Option<andromede_api::v1::Operator>,
        certifications: Option<Vec<String>>,
        status: Option<DatacenterStatus>,
        expected_generation: u64,
    },
    DeleteDatacenter {
        id: String,
    },
    RegisterHost(Host),
    SetHostState {
        id: String,
        state: HostState,
    },
    DeleteHost {
        id: String,
    },
    CreateFlavor(Flavor),
    DeleteFlavor {
        id: String,
    },
    CreateImage(Image),
    DeleteImage {
        id: String,
    },
    CreateProject(Project),
    UpdateProject {
        id: String,
        policy: Option<SovereigntyPolicy>,
        quota: Option<Quota>,
        description: Option<String>,
        expected_generation: u64,
    },
    DeleteProject {
        id: String,
    },
    /// An instance already placed by the leader; apply re-verifies the plan.
    CreateInstance(Instance),
    InstanceAction {
        id: String,
        action: InstanceAction,
    },
    /// States observed on hosts (agents or the simulator).
    ObserveInstances(Vec<(String, InstanceState, String)>),
    CreateServerGroup(ServerGroup),
    DeleteServerGroup {
        id: String,
    },
    /// A volume already placed by the leader; apply re-verifies the plan.
    CreateVolume(Volume),
    VolumeOp {
        id: String,
        op: VolumeOp,
        instance_id: String,
    },
    ObserveVolumes(Vec<(String, VolumeState, String)>),
    // Protocol v2: host agents.
    CreateJoinToken(JoinToken),
    /// An agent trades a join token (checked by its secret's hash) for a host identity.
    EnrollHost {
        token_id: String,
        secret_sha256: String,
        host: Host,
    },
    /// The host's agent missed its heartbeats past the TTL: the host goes down and its
    /// instances HOST_LOST.
    HostLost {
        id: String,
        reason: String,
    },
    /// The host's agent is connected again, with what it reports of the host.
    HostSeen {
        id: String,
        capacity: Option<Resources>,
        driver: String,
        agent_version: String,
    },
    /// An admin declares a down host gone for good: deletions pending on it complete.
    DeclareHostLost {
        id: String,
    },
    ExtendVolume {
        id: String,
        size_gib: u64,
    },
    /// A control-plane server declares the datacenter it runs in.
    LocateReplica {
        node_id: u64,
        datacenter_id: String,
    },
    /// A server left the cluster: its location no longer constrains projects.
    ForgetReplica {
        node_id: u64,
    },
    /// What the host's agent quarantined instead of deleting (guests and volumes its desired
    /// state does not list), as it last reported.
    HostOrphans {
        id: String,
        orphans: Option<andromede_api::v1::HostOrphans>,
    },
    // Protocol v3: API tokens (the secret's hash only; the secret is never in the log).
    CreateApiToken(ApiToken),
    RevokeApiToken {
        id: String,
    },
    // Protocol v4: host certificates.
    /// A host certificate was issued (at enrollment or renewal): it becomes the host's current
    /// one, the one before stays valid until the next, and every other is revoked.
    HostCertificate {
        id: String,
        serial: String,
        not_after_ms: i64,
    },
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateDatacenter(_) => "CreateDatacenter",
            Command::UpdateDatacenter { .. } => "UpdateDatacenter",
            Command::DeleteDatacenter { .. } => "DeleteDatacenter",
            Command::RegisterHost(_) => "RegisterHost",
            Command::SetHostState { .. } => "SetHostState",
            Command::DeleteHost { .. } => "DeleteHost",
            Command::CreateFlavor(_) => "CreateFlavor",
            Command::DeleteFlavor { .. } => "DeleteFlavor",
            Command::CreateImage(_) => "CreateImage",
            Command::DeleteImage { .. } => "DeleteImage",
            Command::CreateProject(_) => "CreateProject",
            Command::UpdateProject { .. } => "UpdateProject",
            Command::DeleteProject { .. } => "DeleteProject",
            Command::CreateInstance(_) => "CreateInstance",
            Command::InstanceAction { .. } => "InstanceAction",
            Command::ObserveInstances(_) => "ObserveInstances",
            Command::CreateServerGroup(_) => "CreateServerGroup",
            Command::DeleteServerGroup { .. } => "DeleteServerGroup",
            Command::CreateVolume(_) => "CreateVolume",
            Command::VolumeOp { .. } => "VolumeOp",
            Command::ObserveVolumes(_) => "ObserveVolumes",
            Command::CreateJoinToken(_) => "CreateJoinToken",
            Command::EnrollHost { .. } => "EnrollHost",
            Command::HostLost { .. } => "HostLost",
            Command::HostSeen { .. } => "HostSeen",
            Command::DeclareHostLost { .. } => "DeclareHostLost",
            Command::ExtendVolume { .. } => "ExtendVolume",
            Command::LocateReplica { .. } => "LocateReplica",
            Command::ForgetReplica { .. } => "ForgetReplica",
            Command::HostOrphans { .. } => "HostOrphans",
            Command::CreateApiToken(_) => "CreateApiToken",
            Command::RevokeApiToken { .. } => "RevokeApiToken",
            Command::HostCertificate { .. } => "HostCertificate",
        }
    }
}

/// The error classes a command can end in; each maps to one gRPC status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmdErrorCode {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    ResourceExhausted,
    /// A credential (join token, host credential) was refused.
    PermissionDenied,
    /// The plan no longer fits at apply time; the leader may re-plan.
    Aborted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct CmdError {
    pub code: CmdErrorCode,
    pub message: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
}

impl CmdError {
    pub fn new(code: CmdErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
        }
    }
    pub fn field(mut self, f: impl Into<String>) -> Self {
        self.field = Some(f.into());
        self
    }
    pub fn not_found(kind: &str, id: &str) -> Self {
        Self::new(CmdErrorCode::NotFound, format!("{kind} {id} not found"))
    }
}

/// What a successful command returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Reply {
    Datacenter(Datacenter),
    Host(Host),
    Flavor(Flavor),
    Image(Image),
    Project(Project),
    Instance(Instance),
    Volume(Volume),
    ServerGroup(ServerGroup),
    JoinToken(JoinToken),
    ApiToken(ApiToken),
    Deleted { id: String, existed: bool },
    Done,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response(pub Result<Reply, CmdError>);
