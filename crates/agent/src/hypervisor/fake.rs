//! In-memory hypervisor with fault knobs, for scale tests and benchmarks.
