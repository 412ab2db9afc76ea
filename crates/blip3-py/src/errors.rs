//! Engine failures as Python exceptions. The exception classes live in
//! `blip3/_errors.py` (so that `ImageError` and `RequestError` can be both a
//! `Blip3Error` and a `ValueError`); their messages are the engine's.

use blip3_engine::EngineError;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyType;

/// What went wrong in work done with the GIL released (owned and `Send`,
/// turned into a Python exception once the GIL is held again).
pub enum Failure {
    /// The engine refused or failed.
    Engine(EngineError),
    /// Image `index` could not be read, decoded or accepted.
    Image { index: usize, message: String },
    /// The request does not fit the model (counts, lengths, messages).
    Request(String),
    /// A Python exception raised while the run was in progress (Ctrl-C's
    /// `KeyboardInterrupt`): it is re-raised as is.
    Python(PyErr),
    /// Anything else, with its message.
    Other(String),
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Self::Engine(e)
    }
}

impl Failure {
    /// The Python exception for this failure.
    pub fn into_pyerr(self, py: Python<'_>) -> PyErr {
        match self {
            Self::Engine(EngineError::Image(e)) => image_error(py, e.to_string()),
            Self::Engine(e @ EngineError::Request(_)) => request_error(py, e.to_string()),
            Self::Engine(e) => blip3_error(py, e.to_string()),
            Self::Image { index, message } => {
                image_error(py, format!("images[{index}]: {message}"))
            }
            Self::Request(message) => request_error(py, message),
            Self::Python(e) => e,
            Self::Other(message) => blip3_error(py, message),
        }
    }
}

/// `blip3.<name>(message)`, falling back to `RuntimeError` if the package's
/// error module cannot be imported.
fn error_of(py: Python<'_>, name: &str, message: String) -> PyErr {
    let class = py
        .import("blip3._errors")
        .and_then(|m| m.getattr(name))
        .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from));
    match class {
        Ok(class) => PyErr::from_type(class, message),
        Err(_) => PyRuntimeError::new_err(message),
    }
}

/// `blip3.Blip3Error`: the engine failed (loading, computing).
pub fn blip3_error(py: Python<'_>, message: String) -> PyErr {
    error_of(py, "Blip3Error", message)
}

/// `blip3.ImageError`: an image could not be read, decoded or accepted.
pub fn image_error(py: Python<'_>, message: String) -> PyErr {
    error_of(py, "ImageError", message)
}

/// `blip3.RequestError`: the request does not fit the model.
pub fn request_error(py: Python<'_>, message: String) -> PyErr {
    error_of(py, "RequestError", message)
}
