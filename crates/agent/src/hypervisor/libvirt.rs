//! The libvirt driver: real KVM/QEMU (or TCG) guests through the `virt` crate.
