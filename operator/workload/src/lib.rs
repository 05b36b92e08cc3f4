//! commlab-workload
