//! All integration tests, in one binary (faster to build and link; one
//! template Go cache per run). Each module tests one command against a real
//! Go toolchain and real cache directories.

mod support;

mod ci;
mod generate;
mod hook;
mod layout_cli;
mod prog;
mod readme;
mod scan;
mod simulate;
mod trim;
mod wrapper;
