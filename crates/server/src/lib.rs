//! The Andromède server: public gRPC API, scheduler and Raft node in one process.

pub mod agents;
pub mod api;
pub mod auth;
pub mod bootstrap;
pub mod config;
pub mod error;
pub mod internal;
pub mod metrics;
pub mod network;
pub mod node;
pub mod sealed;
pub mod seed;
pub mod serve;
pub mod simulator;
pub mod tls;
