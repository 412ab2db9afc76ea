//! BLIP-3 (xGen-MM phi3-mini r-v1) model, one file per part, on candle tensors.
//!
//! * [`config`]: `config.json` as Hugging Face ships it, with the optional size
//!   overrides of the test fixtures (absent fields mean the real sizes).
//! * [`weights`]: memory-mapped safetensors (single file or sharded), F32/BF16/F16,
//!   looked up by the checkpoint's own key names with shape checks.
//! * [`vision`]: open_clip ViT-H/14 visual tower (spec §4).
//! * [`anyres`]: the raster-view regrouping of grid crops (spec §5).
//! * [`resampler`]: the (text-conditioned) perceiver resampler (spec §6).
//! * [`phi3`] and [`decoupled`]: Phi-3 with the decoupled embedding/head (spec §8),
//!   with its key/value cache (F32 or F16, grown on demand).
//! * [`checkpoint`]: the full key/shape list and a random-weight checkpoint writer.
//! * [`quantized_folder`]: writes a pre-quantised (Q8_0/Q4_0) model folder.

pub mod anyres;
mod blip3;
pub mod checkpoint;
pub mod config;
pub mod decoupled;
mod error;
mod kv_cache;
pub mod nn;
pub mod phi3;
pub mod quantized_folder;
pub mod resampler;
pub mod vision;
pub mod weights;

pub use blip3::Blip3Model;
pub use config::Blip3Config;
pub use error::ModelError;
pub use weights::WeightStore;

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, ModelError>;
