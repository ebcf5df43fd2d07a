//! Load benchmarks of the suki-ambient adapters: see `src/bin/adapter_load.rs`.
