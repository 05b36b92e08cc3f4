//! Tests of the `commlab.dev` API as the API server sees it: schema and CEL
//! rules evaluated client-side, manifests, and the examples.

mod crd;
mod examples;
mod manifests;
mod rules;
mod support;
