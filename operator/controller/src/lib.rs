//! commlab-controller
