use std::path::PathBuf;

/// Errors raised while loading or running the model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A model file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File that failed.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// `config.json` (or another JSON file) is malformed or describes another model.
    #[error("bad model config {path}: {reason}")]
    BadConfig {
        /// File that failed.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A safetensors file is malformed.
    #[error("bad safetensors file {path}: {reason}")]
    BadWeights {
        /// File that failed.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The folder has no weights.
    #[error("no weights in {0}: expected model.safetensors or model.safetensors.index.json")]
    NoWeights(PathBuf),
    /// A tensor the model needs is not in the checkpoint.
    #[error("missing tensor {name} (looked in {searched})")]
    MissingTensor {
        /// Checkpoint key.
        name: String,
        /// Files searched.
        searched: String,
    },
    /// A tensor has the wrong shape for the configuration.
    #[error("tensor {name} in {file} has shape {found:?}, expected {expected:?} from config.json")]
    ShapeMismatch {
        /// Checkpoint key.
        name: String,
        /// File holding it.
        file: String,
        /// Shape in the file.
        found: Vec<usize>,
        /// Shape the config implies.
        expected: Vec<usize>,
    },
    /// A tensor is stored in a dtype the engine cannot load.
    #[error("tensor {name} in {file} has unsupported dtype {dtype} (supported: F32, BF16, F16)")]
    UnsupportedDtype {
        /// Checkpoint key.
        name: String,
        /// File holding it.
        file: String,
        /// Dtype in the file.
        dtype: String,
    },
    /// Invalid input to a forward pass (e.g. too many tokens).
    #[error("invalid input: {0}")]
    Input(String),
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
}
