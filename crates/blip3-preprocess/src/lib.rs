//! Image preprocessing for BLIP-3 (spec §10), reproducing the Python reference
//! pixel for pixel:
//!
//! * [`decode`]: bytes → RGB8 with a pixel limit (Pillow's `convert("RGB")`).
//! * [`resize`]: Pillow's 8-bit fixed-point bicubic resampler (§10.8).
//! * [`anyres`]: best-resolution choice, resize-and-pad, row-major crops (§10.2–10.4).
//! * [`processor`]: the whole per-image pipeline producing `pixel_values`.

pub mod anyres;
pub mod decode;
mod error;
pub mod processor;
pub mod resize;

pub use error::PreprocessError;
pub use processor::{AspectMode, ImageProcessor, PreprocessedImage, ProcessorConfig};
pub use resize::RgbImage;
