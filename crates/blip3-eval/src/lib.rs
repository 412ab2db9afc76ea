//! The evaluation harness behind `blip3 eval`: benchmark datasets read from
//! their public formats, the OpenFlamingo few-shot protocol, resumable runs
//! and the reports. It never touches a tensor: answers come from an
//! [`Answerer`](run::Answerer) the caller supplies (the CLI drives the engine).

pub mod dataset;
mod error;
pub mod judge;
mod plot;
pub mod report;
pub mod requests;
pub mod run;
pub mod sampler;
pub mod score;
pub mod settings;
pub mod task;

pub use error::EvalError;
pub use task::{DataFormat, Metric, PromptStyle, Task, TASKS};
