//! commlab-workload
pub mod error;
pub mod services;
pub mod report;
