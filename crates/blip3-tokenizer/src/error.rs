use std::path::PathBuf;

/// Errors raised while loading tokenizer files or encoding/decoding text.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A tokenizer file could not be read.
    #[error("cannot read tokenizer file {path}: {source}")]
    Io {
        /// File that failed.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// `tokenizer.model` is not a valid SentencePiece model.
    #[error("invalid SentencePiece model {path}: {reason}")]
    BadModel {
        /// File that failed.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A JSON tokenizer file could not be parsed.
    #[error("invalid tokenizer JSON {path}: {reason}")]
    BadJson {
        /// File that failed.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Neither `tokenizer.model` nor `tokenizer.json` was found.
    #[error("no tokenizer in {0}: expected tokenizer.model or tokenizer.json")]
    Missing(PathBuf),
    /// The vocabulary has no piece the encoder needs.
    #[error("tokenizer vocabulary lacks required piece {0:?}")]
    MissingPiece(String),
}
