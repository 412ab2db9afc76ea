/// Errors of the evaluation harness.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The command line asks for something impossible.
    #[error("{0}")]
    Usage(String),
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A data file is not in the expected format.
    #[error("{location}: {problem}")]
    Data {
        /// File, and where in it.
        location: String,
        /// What is wrong.
        problem: String,
    },
    /// Scoring failed.
    #[error(transparent)]
    Metrics(#[from] blip3_metrics::MetricsError),
    /// The few-shot sampler refused the settings.
    #[error("few-shot sampling: {0}")]
    Sampler(String),
}

impl EvalError {
    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, e: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }

    /// A format problem at `location`.
    pub fn data(location: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Data {
            location: location.into(),
            problem: problem.into(),
        }
    }
}
