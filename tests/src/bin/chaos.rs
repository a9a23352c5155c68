//! The reliability suites (written next).
fn main() {}
