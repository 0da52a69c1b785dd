//! `andromede-agent`: the per-host agent binary.

fn main() {
    println!("andromede-agent");
}
