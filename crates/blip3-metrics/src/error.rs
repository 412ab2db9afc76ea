/// Errors raised while reading predictions or references, or scoring them.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A predictions or reference file is not in the expected format.
    #[error("{location}: {problem}")]
    Format {
        /// File and line (or key) where the problem is.
        location: String,
        /// What is wrong there.
        problem: String,
    },
    /// Predictions and references do not cover the same items.
    #[error("predictions and references do not match: {0}")]
    Mismatch(String),
}
