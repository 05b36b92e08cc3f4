//! commlab-api
