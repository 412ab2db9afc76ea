/// Errors raised by the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Loading or running the model failed.
    #[error(transparent)]
    Model(#[from] blip3_model::ModelError),
    /// The image could not be read or prepared.
    #[error(transparent)]
    Image(#[from] blip3_preprocess::PreprocessError),
    /// The tokenizer files could not be read.
    #[error(transparent)]
    Tokenizer(#[from] blip3_tokenizer::TokenizerError),
    /// A request is not valid for this model.
    #[error("invalid request: {0}")]
    Request(String),
    /// The caller stopped the run ([`crate::Pipeline::generate_with`]).
    #[error("generation cancelled")]
    Cancelled,
    /// A file could not be written.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// Destination.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl From<candle_core::Error> for EngineError {
    fn from(e: candle_core::Error) -> Self {
        Self::Model(e.into())
    }
}
