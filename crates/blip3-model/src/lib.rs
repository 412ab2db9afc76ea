//! The BLIP-3 / xGen-MM family (r-v1 instruct and base, v1.5), one file per
//! part, on candle tensors.
//!
//! * [`family`]: the model seam: which family a config describes, its vision
//!   tower, key table and defaults; one folder per family
//!   ([`blip3_r1`]: open_clip ViT-H/14; [`xgenmm_v15`]: SigLIP so400m).
//! * [`model`]: a loaded family member and the operations the engine composes.
//!
//! * [`config`]: `config.json` as Hugging Face ships it, with the optional size
//!   overrides of the test fixtures (absent fields mean the real sizes).
//! * [`weights`]: memory-mapped safetensors (single file or sharded), F32/BF16/F16,
//!   looked up by the checkpoint's own key names with shape checks.
//! * [`anyres`]: the raster-view regrouping of grid crops (spec §5).
//! * [`resampler`]: the perceiver resampler: text queries optional (r-v1
//!   instruct), padding mask optional (v1.5) (spec §6, family spec §1.2).
//! * [`phi3`] and [`decoupled`]: Phi-3 with the decoupled embedding/head (spec §8),
//!   with its key/value cache (F32 or F16, grown on demand).
//! * [`checkpoint`]: key tables' entries, the load-time key check and a
//!   random-weight checkpoint writer.
//! * [`quantized_folder`]: writes a pre-quantised (Q8_0/Q4_0) model folder.

pub mod anyres;
pub mod blip3_r1;
pub mod checkpoint;
pub mod config;
pub mod decoupled;
mod error;
pub mod family;
mod kv_cache;
pub mod model;
pub mod nn;
pub mod phi3;
pub mod quantized_folder;
pub mod resampler;
pub mod weights;
pub mod xgenmm_v15;

pub use config::ModelConfig;
pub use error::ModelError;
pub use family::{Family, Variant, VisionTower};
pub use model::{CropFeatures, SpliceMode, VisionLanguageModel};
pub use weights::WeightStore;

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, ModelError>;
