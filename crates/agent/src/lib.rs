//! Andromède host agent: enrolls its host, keeps a stream to the control plane and converges the
//! host's guests and volumes to the replicated desired state.

pub mod drivers;
pub mod hypervisor;
pub mod identity;
pub mod reconcile;
pub mod session;
pub mod tls;
