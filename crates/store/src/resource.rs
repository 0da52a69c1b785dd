//! A common view of every stored resource kind: its table, its metadata and its scope.

use andromede_api::v1::{
    ApiToken, Datacenter, Flavor, Host, Image, Instance, JoinToken, Meta, Project, ServerGroup,
    Volume,
};
use serde::{de::DeserializeOwned, Serialize};

/// The resource kinds, each with its SQLite table and its event/watch name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Datacenter,
    Host,
    Flavor,
    Image,
    Project,
    Instance,
    Volume,
    ServerGroup,
    JoinToken,
    ApiToken,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Datacenter,
        Kind::Host,
        Kind::Flavor,
        Kind::Image,
        Kind::Project,
        Kind::Instance,
        Kind::Volume,
        Kind::ServerGroup,
        Kind::JoinToken,
        Kind::ApiToken,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Datacenter => "datacenter",
            Kind::Host => "host",
            Kind::Flavor => "flavor",
            Kind::Image => "image",
            Kind::Project => "project",
            Kind::Instance => "instance",
            Kind::Volume => "volume",
            Kind::ServerGroup => "server_group",
            Kind::JoinToken => "join_token",
            Kind::ApiToken => "api_token",
        }
    }

    /// The SQLite table holding this kind (see `migrations/`).
    pub fn table(self) -> &'static str {
        match self {
            Kind::Datacenter => "datacenters",
            Kind::Host => "hosts",
            Kind::Flavor => "flavors",
            Kind::Image => "images",
            Kind::Project => "projects",
            Kind::Instance => "instances",
            Kind::Volume => "volumes",
            Kind::ServerGroup => "server_groups",
            Kind::JoinToken => "join_tokens",
            Kind::ApiToken => "api_tokens",
        }
    }
}

/// Implemented by every stored resource message.
pub trait Resource: Clone + Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    const KIND: Kind;
    fn meta(&self) -> &Meta;
    fn meta_mut(&mut self) -> &mut Meta;
    /// Clears what must never leave the server (credential hashes); used on every copy that
    /// goes to a client or a watcher.
    fn redact(&mut self) {}
}

macro_rules! resource {
    ($t:ty, $k:ident) => {
        resource!($t, $k, |_r: &mut $t| {});
    };
    ($t:ty, $k:ident, $redact:expr) => {
        impl Resource for $t {
            const KIND: Kind = Kind::$k;
            fn meta(&self) -> &Meta {
                // Every stored resource gets its meta from the proposer; an absent one would be
                // a bug caught by the state's own tests, so fall back to an empty shared value.
                self.meta.as_ref().unwrap_or(&EMPTY_META)
            }
            fn meta_mut(&mut self) -> &mut Meta {
                self.meta.get_or_insert_with(Meta::default)
            }
            fn redact(&mut self) {
                let f: fn(&mut $t) = $redact;
                f(self)
            }
        }
    };
}

static EMPTY_META: Meta = Meta {
    id: String::new(),
    name: String::new(),
    project_id: String::new(),
    generation: 0,
    created_at_ms: 0,
    updated_at_ms: 0,
    request_id: String::new(),
};

resource!(Datacenter, Datacenter);
resource!(Host, Host, |h: &mut Host| h.credential_sha256.clear());
resource!(Flavor, Flavor);
resource!(Image, Image);
resource!(Project, Project);
resource!(Instance, Instance);
resource!(Volume, Volume);
resource!(ServerGroup, ServerGroup);
resource!(JoinToken, JoinToken, |t: &mut JoinToken| t
    .secret_sha256
    .clear());
resource!(ApiToken, ApiToken, |t: &mut ApiToken| t
    .secret_sha256
    .clear());
