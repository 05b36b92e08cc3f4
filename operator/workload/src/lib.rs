//! commlab-workload
pub mod error;
pub mod services;
pub mod report;
pub mod load;
pub mod measure;
pub mod infra;
pub mod engine;
pub mod cli;
