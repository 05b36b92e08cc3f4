//! Helpers for tests against the local Kubernetes control plane.
