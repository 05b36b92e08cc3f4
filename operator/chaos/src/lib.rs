//! commlab-chaos
