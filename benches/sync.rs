//! Sync figures (being written).

fn main() {}
