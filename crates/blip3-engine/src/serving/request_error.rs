//! Why the engine refused or failed one request: what a server needs to
//! answer it (the kind picks the HTTP status, `param` the request field at
//! fault, `code` a machine-readable reason), without any wire format here.

/// The class of a request error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request cannot be served as written (HTTP 400).
    Invalid,
    /// An input is over its size limit (HTTP 413).
    TooLarge,
    /// The queue is full; retry later (HTTP 429).
    Busy,
    /// The engine is stopping (HTTP 503).
    Unavailable,
    /// A failure inside the engine (HTTP 500).
    Internal,
}

/// A request error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    /// The class of error.
    pub kind: ErrorKind,
    /// Human-readable cause.
    pub message: String,
    /// The request field at fault, when one is.
    pub param: Option<String>,
    /// Short machine-readable code.
    pub code: Option<&'static str>,
}

impl RequestError {
    fn new(kind: ErrorKind, message: impl Into<String>, param: Option<&str>) -> Self {
        Self {
            kind,
            message: message.into(),
            param: param.map(str::to_string),
            code: None,
        }
    }

    /// A request that cannot be served as written.
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        Self::new(ErrorKind::Invalid, message, param)
    }

    /// An input over its size limit.
    pub fn too_large(message: impl Into<String>, param: Option<&str>) -> Self {
        Self::new(ErrorKind::TooLarge, message, param).with_code("payload_too_large")
    }

    /// The queue is full.
    pub fn busy(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Busy, message, None).with_code("queue_full")
    }

    /// The engine is stopping.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message, None).with_code("shutting_down")
    }

    /// A failure inside the engine.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message, None)
    }

    /// Sets the machine-readable code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
}
