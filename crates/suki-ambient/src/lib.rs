//! `suki-ambient`: receive Suki Ambient webhooks safely and fetch their results.
//!
//! This facade re-exports [`suki_ambient_core`] at its root; framework adapters and the API
//! client are behind features (`axum`, `actix`, `warp`, `client`, `sandbox`, `testing`, `full`).
//!
#![doc = include_str!("../../../README.md")]
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub use suki_ambient_core::*;
