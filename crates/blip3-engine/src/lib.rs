//! The BLIP-3 pipeline on top of the model crate: prompt building, image
//! preprocessing, vision encoding, splicing, greedy generation with the
//! reference's stop rules, and the stage-tensor parity dump.

mod error;
pub mod generation;
pub mod parity;
pub mod pipeline;
pub mod prompt;

pub use error::EngineError;
pub use generation::StopReason;
pub use pipeline::{Pipeline, PipelineOptions, RunOutput, StageTensors, StageTimings};
