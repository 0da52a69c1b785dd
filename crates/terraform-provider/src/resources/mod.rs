//! One module per managed resource type.

pub mod attachment;
pub mod flavor;
pub mod instance;
pub mod project;
pub mod server_group;
pub mod shared;
pub mod volume;
