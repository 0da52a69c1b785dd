//! Who may call what: every RPC of every service the server hosts maps to one [`Access`] in
//! [`ACCESS`], and the server's authorization layer refuses any call whose method is not listed.

use andromede_api::v1::Role;

/// What a call needs before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing: health checks and reflection.
    Public,
    /// A one-use join token, checked by the agent service itself (enrollment).
    Join,
    /// A host: its certificate from the cluster CA (mutual TLS), bound to one host and
    /// datacenter; over plaintext, its host credential.
    Host,
    /// A server of this cluster: its server certificate from the cluster CA (mutual TLS); over
    /// plaintext, the cluster credential.
    Peer,
    /// An API token whose role is at least `project` in a project scope or `cloud` in the
    /// cloud scope (`None`: that scope may not call it at all). A project-scoped caller then
    /// only ever sees its own project's resources.
    Token {
        project: Option<Role>,
        cloud: Option<Role>,
    },
}

/// Reading the shared catalog (datacenters, flavors) or one's own project: every role.
pub const READ: Access = Access::Token {
    project: Some(Role::Reader),
    cloud: Some(Role::Reader),
};
/// Changing a project's resources: project members and admins, and the cloud admin.
pub const WRITE: Access = Access::Token {
    project: Some(Role::Member),
    cloud: Some(Role::Admin),
};
/// Managing a project (its tokens, narrowing its policy): project admins and the cloud admin.
pub const PROJECT_ADMIN: Access = Access::Token {
    project: Some(Role::Admin),
    cloud: Some(Role::Admin),
};
/// Reading tokens: project admins for their project, and the whole cloud scope.
pub const TOKEN_READ: Access = Access::Token {
    project: Some(Role::Admin),
    cloud: Some(Role::Reader),
};
/// Reading the infrastructure (hosts, cluster): the cloud scope only.
pub const CLOUD_READ: Access = Access::Token {
    project: None,
    cloud: Some(Role::Reader),
};
/// Changing the infrastructure, projects, quotas and membership: the cloud admin only.
pub const CLOUD_ADMIN: Access = Access::Token {
    project: None,
    cloud: Some(Role::Admin),
};

/// Every RPC the server hosts, by its gRPC path, with the access it needs.
pub const ACCESS: &[(&str, Access)] = &[
    // Stock services.
    ("/grpc.health.v1.Health/Check", Access::Public),
    ("/grpc.health.v1.Health/Watch", Access::Public),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        Access::Public,
    ),
    // Infrastructure.
    (
        "/andromede.v1.InfrastructureService/CreateDatacenter",
        CLOUD_ADMIN,
    ),
    (
        "/andromede.v1.InfrastructureService/UpdateDatacenter",
        CLOUD_ADMIN,
    ),
    ("/andromede.v1.InfrastructureService/GetDatacenter", READ),
    ("/andromede.v1.InfrastructureService/ListDatacenters", READ),
    (
        "/andromede.v1.InfrastructureService/DeleteDatacenter",
        CLOUD_ADMIN,
    ),
    (
        "/andromede.v1.InfrastructureService/RegisterHost",
        CLOUD_ADMIN,
    ),
    (
        "/andromede.v1.InfrastructureService/SetHostState",
        CLOUD_ADMIN,
    ),
    ("/andromede.v1.InfrastructureService/GetHost", CLOUD_READ),
    ("/andromede.v1.InfrastructureService/ListHosts", CLOUD_READ),
    (
        "/andromede.v1.InfrastructureService/DeleteHost",
        CLOUD_ADMIN,
    ),
    (
        "/andromede.v1.InfrastructureService/DeclareHostLost",
        CLOUD_ADMIN,
    ),
    (
        "/andromede.v1.InfrastructureService/CreateJoinToken",
        CLOUD_ADMIN,
    ),
    (
        "/andromede.v1.InfrastructureService/ListJoinTokens",
        CLOUD_READ,
    ),
    (
        "/andromede.v1.InfrastructureService/CreateFlavor",
        CLOUD_ADMIN,
    ),
    ("/andromede.v1.InfrastructureService/GetFlavor", READ),
    ("/andromede.v1.InfrastructureService/ListFlavors", READ),
    (
        "/andromede.v1.InfrastructureService/DeleteFlavor",
        CLOUD_ADMIN,
    ),
    // Project images for members; a public image (no project) needs the cloud admin, which
    // the handler checks.
    ("/andromede.v1.InfrastructureService/CreateImage", WRITE),
    ("/andromede.v1.InfrastructureService/GetImage", READ),
    ("/andromede.v1.InfrastructureService/ListImages", READ),
    ("/andromede.v1.InfrastructureService/DeleteImage", WRITE),
    // Identity. A project admin's policy change may only narrow it and never touch the
    // quota (the handler checks); widening and quotas are the cloud's.
    ("/andromede.v1.IdentityService/CreateProject", CLOUD_ADMIN),
    ("/andromede.v1.IdentityService/UpdateProject", PROJECT_ADMIN),
    ("/andromede.v1.IdentityService/GetProject", READ),
    ("/andromede.v1.IdentityService/ListProjects", READ),
    ("/andromede.v1.IdentityService/DeleteProject", CLOUD_ADMIN),
    ("/andromede.v1.IdentityService/GetComplianceReport", READ),
    ("/andromede.v1.IdentityService/CreateToken", PROJECT_ADMIN),
    ("/andromede.v1.IdentityService/ListTokens", TOKEN_READ),
    ("/andromede.v1.IdentityService/RevokeToken", PROJECT_ADMIN),
    ("/andromede.v1.IdentityService/WhoAmI", READ),
    // Compute.
    ("/andromede.v1.ComputeService/CreateInstance", WRITE),
    ("/andromede.v1.ComputeService/GetInstance", READ),
    ("/andromede.v1.ComputeService/ListInstances", READ),
    ("/andromede.v1.ComputeService/StartInstance", WRITE),
    ("/andromede.v1.ComputeService/StopInstance", WRITE),
    ("/andromede.v1.ComputeService/RebootInstance", WRITE),
    ("/andromede.v1.ComputeService/DeleteInstance", WRITE),
    // Console output can hold what the guest prints of its secrets: members, not readers.
    ("/andromede.v1.ComputeService/GetConsoleLog", WRITE),
    ("/andromede.v1.ComputeService/CreateServerGroup", WRITE),
    ("/andromede.v1.ComputeService/GetServerGroup", READ),
    ("/andromede.v1.ComputeService/ListServerGroups", READ),
    ("/andromede.v1.ComputeService/DeleteServerGroup", WRITE),
    // Volumes.
    ("/andromede.v1.VolumeService/CreateVolume", WRITE),
    ("/andromede.v1.VolumeService/GetVolume", READ),
    ("/andromede.v1.VolumeService/ListVolumes", READ),
    ("/andromede.v1.VolumeService/DeleteVolume", WRITE),
    ("/andromede.v1.VolumeService/AttachVolume", WRITE),
    ("/andromede.v1.VolumeService/DetachVolume", WRITE),
    ("/andromede.v1.VolumeService/ExtendVolume", WRITE),
    // Placement and events.
    ("/andromede.v1.PlacementService/Explain", READ),
    ("/andromede.v1.EventService/Watch", READ),
    // Cluster membership.
    ("/andromede.v1.ClusterService/Status", CLOUD_READ),
    ("/andromede.v1.ClusterService/AddLearner", CLOUD_ADMIN),
    ("/andromede.v1.ClusterService/Promote", CLOUD_ADMIN),
    ("/andromede.v1.ClusterService/RemoveNode", CLOUD_ADMIN),
    ("/andromede.v1.ClusterService/Initialize", CLOUD_ADMIN),
    ("/andromede.v1.ClusterService/LocateNode", CLOUD_ADMIN),
    // Hosts.
    ("/andromede.v1.AgentService/Enroll", Access::Join),
    ("/andromede.v1.AgentService/Session", Access::Host),
    // Between servers.
    ("/andromede.v1.InternalService/AppendEntries", Access::Peer),
    ("/andromede.v1.InternalService/Vote", Access::Peer),
    (
        "/andromede.v1.InternalService/InstallSnapshot",
        Access::Peer,
    ),
    ("/andromede.v1.InternalService/Forward", Access::Peer),
    ("/andromede.v1.InternalService/ReadIndex", Access::Peer),
    ("/andromede.v1.InternalService/ConsoleLog", Access::Peer),
];

/// The services API clients call (and reflection lists); the agent and internal services are
/// for certificate holders only.
pub const PUBLIC_SERVICES: &[&str] = &[
    "andromede.v1.InfrastructureService",
    "andromede.v1.IdentityService",
    "andromede.v1.ComputeService",
    "andromede.v1.VolumeService",
    "andromede.v1.PlacementService",
    "andromede.v1.EventService",
    "andromede.v1.ClusterService",
];

/// The access `path` needs; `None` for a method nobody may call.
pub fn access(path: &str) -> Option<Access> {
    ACCESS.iter().find(|(p, _)| *p == path).map(|(_, a)| *a)
}

/// The caller of a token-authenticated call, as its token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: String,
    pub token_name: String,
    /// The project it acts in; `None` for the cloud scope.
    pub project_id: Option<String>,
    pub role: Role,
}

impl Principal {
    /// Whether this caller's scope and role meet `a`.
    pub fn allows(&self, a: Access) -> bool {
        let Access::Token { project, cloud } = a else {
            return false;
        };
        let need = if self.project_id.is_some() {
            project
        } else {
            cloud
        };
        need.is_some_and(|n| rank(self.role) >= rank(n))
    }

    pub fn is_cloud_admin(&self) -> bool {
        self.project_id.is_none() && self.role == Role::Admin
    }

    /// The project this caller is confined to, if any.
    pub fn confined_to(&self) -> Option<&str> {
        self.project_id.as_deref()
    }

    /// Whether a token of `role` in `project` (None: cloud) is within what this caller holds:
    /// the same scope or a project inside the cloud scope, and a role no higher.
    pub fn may_grant(&self, project: Option<&str>, role: Role) -> bool {
        let scope_ok = match (&self.project_id, project) {
            (None, _) => true,
            (Some(mine), Some(p)) => mine == p,
            (Some(_), None) => false,
        };
        scope_ok && rank(role) <= rank(self.role)
    }
}

/// Orders roles: reader < member < admin.
pub fn rank(r: Role) -> u8 {
    match r {
        Role::Unspecified => 0,
        Role::Reader => 1,
        Role::Member => 2,
        Role::Admin => 3,
    }
}

/// The name users see: `cloud-admin`, `cloud-reader`, or the project role.
pub fn role_name(cloud: bool, r: Role) -> &'static str {
    match (cloud, r) {
        (true, Role::Admin) => "cloud-admin",
        (true, Role::Reader) => "cloud-reader",
        (true, _) => "cloud-invalid",
        (false, Role::Admin) => "admin",
        (false, Role::Member) => "member",
        (false, Role::Reader) => "reader",
        (false, Role::Unspecified) => "invalid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn every_compiled_method_has_an_entry_and_every_entry_a_method() {
        let fds =
            prost_types::FileDescriptorSet::decode(andromede_api::FILE_DESCRIPTOR_SET).unwrap();
        let mut methods = Vec::new();
        for f in &fds.file {
            for s in &f.service {
                for m in &s.method {
                    methods.push(format!("/{}.{}/{}", f.package(), s.name(), m.name()));
                }
            }
        }
        assert!(
            methods.len() > 50,
            "descriptor set looks empty: {methods:?}"
        );
        let missing: Vec<_> = methods.iter().filter(|m| access(m).is_none()).collect();
        assert!(
            missing.is_empty(),
            "RPCs without an access entry: {missing:?}"
        );
        for (p, _) in ACCESS {
            if p.starts_with("/andromede.") {
                assert!(methods.iter().any(|m| m == p), "entry for no RPC: {p}");
            }
        }
    }

    #[test]
    fn public_services_are_exactly_the_token_services() {
        let fds =
            prost_types::FileDescriptorSet::decode(andromede_api::FILE_DESCRIPTOR_SET).unwrap();
        for f in &fds.file {
            for s in &f.service {
                let name = format!("{}.{}", f.package(), s.name());
                let token = s.method.iter().all(|m| {
                    matches!(
                        access(&format!("/{name}/{}", m.name())),
                        Some(Access::Token { .. })
                    )
                });
                assert_eq!(
                    PUBLIC_SERVICES.contains(&name.as_str()),
                    token,
                    "{name}: listed as public exactly when every method takes an API token"
                );
            }
        }
    }

    #[test]
    fn roles_nest() {
        let p = |project: Option<&str>, role| Principal {
            token_id: "t".into(),
            token_name: "t".into(),
            project_id: project.map(String::from),
            role,
        };
        assert!(p(Some("a"), Role::Member).allows(WRITE));
        assert!(!p(Some("a"), Role::Reader).allows(WRITE));
        assert!(!p(Some("a"), Role::Admin).allows(CLOUD_READ));
        assert!(p(None, Role::Reader).allows(CLOUD_READ));
        assert!(!p(None, Role::Reader).allows(WRITE));
        assert!(p(None, Role::Admin).allows(CLOUD_ADMIN));
        assert!(!p(Some("a"), Role::Admin).may_grant(None, Role::Reader));
        assert!(!p(Some("a"), Role::Member).may_grant(Some("a"), Role::Admin));
        assert!(p(Some("a"), Role::Admin).may_grant(Some("a"), Role::Admin));
        assert!(!p(Some("a"), Role::Admin).may_grant(Some("b"), Role::Reader));
        assert!(p(None, Role::Admin).may_grant(Some("b"), Role::Admin));
        assert!(!p(None, Role::Reader).may_grant(Some("b"), Role::Member));
    }
}
