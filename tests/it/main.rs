//! The integration tests, one binary: each file is a module, so cargo links the library
//! and its dependencies into one test executable instead of one per file.
//!
//! `tests/wgpu.rs` stays a binary of its own: it sets the Vulkan driver's environment
//! (`GALLIVM_PERF`, `CUBECL_AUTOTUNE_LEVEL`) in its process before the driver loads, which must neither race
//! with nor leak into the tests here.

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod cli;
mod data_sources;
mod own_images;
mod parity;
mod pytorch_files;
mod resume;
