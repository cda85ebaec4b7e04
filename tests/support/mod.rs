//! Test support: TODO
