//! Pieces of the `bump` binary that are not argument parsing: the demo.

pub mod demo;
