//! The BLIP-3 / xGen-MM pipeline on top of the model crate: prompt building
//! (chat, raw and few-shot), image
//! preprocessing, vision encoding, splicing, generation (greedy as the
//! reference, or sampled) with the reference's stop rules, step-wise sessions
//! for batching, the stage-tensor parity dump, and [`serving`]: the engine
//! a server submits requests to (scheduling, batching, image cache).

mod error;
pub mod fewshot;
pub mod generation;
pub mod parity;
pub mod pipeline;
pub mod prompt;
pub mod sampling;
pub mod serving;
pub mod session;

pub use blip3_model::{Family, SpliceMode};
pub use blip3_tokenizer::{MarkedText, TextKind};
pub use error::EngineError;
pub use generation::StopReason;
pub use pipeline::{ImageInfo, Pipeline, PipelineOptions, RunOutput, StageTensors, StageTimings};
pub use sampling::{Choice, SamplingParams};
pub use session::{EncodedImage, GenerationParams, Prefill, Sequence};
