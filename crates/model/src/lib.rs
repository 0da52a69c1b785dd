//! Domain rules of Andromède, free of I/O: sovereignty, capacity, quotas, lifecycles, validation.

pub mod capacity;
pub mod jurisdiction;
pub mod lifecycle;
pub mod policy;
pub mod quota;
pub mod validate;
