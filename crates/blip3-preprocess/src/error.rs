use std::path::PathBuf;

/// Errors raised while reading or preparing an image.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The image file could not be read.
    #[error("cannot read image {path}: {source}")]
    Io {
        /// File that failed.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The data is not an image in a supported format.
    #[error("not a supported image (PNG, JPEG, WebP, GIF, BMP): {0}")]
    UnknownFormat(String),
    /// The image is corrupt or truncated.
    #[error("corrupt or truncated image: {0}")]
    Corrupt(String),
    /// The image has more pixels than allowed (decompression-bomb guard).
    #[error("image is {width}x{height} = {pixels} pixels, above the limit of {limit} pixels")]
    TooLarge {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// width × height.
        pixels: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The image has a zero dimension.
    #[error("image has an empty dimension ({width}x{height})")]
    Empty {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// `preprocessor_config.json` is missing or invalid.
    #[error("bad preprocessor config {path}: {reason}")]
    BadConfig {
        /// File that failed.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}
