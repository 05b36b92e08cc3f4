//! commlab's main job, runnable on one machine with no cluster: `orders` and
//! `catalog` for the six patterns (`services`), the throw-away servers they
//! need (`infra`), the open-model load generator (`load`) and its maths
//! (`measure`), the experiment engine (`engine`), the report (`report`) and
//! the `commlab` command line (`cli`).

pub mod cli;
pub mod engine;
pub mod error;
pub mod infra;
pub mod load;
pub mod measure;
pub mod report;
pub mod services;
