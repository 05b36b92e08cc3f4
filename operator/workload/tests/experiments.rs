//! Experiments against real servers (being written).
fn main() {}
