//! All integration tests, in one binary (faster to build and link; one
//! template Go cache per run). Each module tests one command against a real
//! Go toolchain and real cache directories.

mod support;

mod ci;
mod conventions;
mod edges;
mod faults;
mod generate;
mod hook;
mod house;
mod layout_cli;
mod limits;
mod prog;
mod prog_remote;
mod progress;
mod readme;
mod remote;
mod remote_link;
mod scan;
mod sim_real;
mod simulate;
mod stats;
mod trace;
mod trim;
mod wrapper;
