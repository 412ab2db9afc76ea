//! Serving many requests on one loaded model: the [`Engine`] API a server
//! uses ([`Engine::submit`] → a stream of [`Event`]s, cancel by dropping or
//! [`Submission::cancel`]), and behind it the scheduler (continuous
//! batching on an engine thread), the image-embedding cache and the
//! counters. Nothing here knows HTTP.

mod engine;
pub mod metrics;
mod request_error;
pub mod scheduler;
pub mod vision_cache;

pub use engine::{
    Engine, EngineConfig, EngineRequest, ImageInput, ModelInfo, Submission, TokenBudget,
};
pub use metrics::Metrics;
pub use request_error::{ErrorKind, RequestError};
pub use scheduler::{Event, Timings, TokenLogprob, Usage};
