//! `stream=True`: the generation runs on its own thread and sends text
//! pieces; the Python iterator receives them with the GIL released.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blip3_engine::RunOutput;
use blip3_tokenizer::Tokenizer;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::errors::{blip3_error, Failure};
use crate::{Generation, Job, Shared};

/// How often a waiting iterator checks for Ctrl-C.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// Turns the growing list of generated ids into new pieces of the answer:
/// each piece is what the decoded answer gained, less a trailing partial
/// character (U+FFFD until the next id completes it). The pieces joined,
/// plus [`Pieces::rest`], are the final text.
#[derive(Default)]
pub struct Pieces {
    ids: Vec<u32>,
    shown: usize,
}

impl Pieces {
    /// The new piece after `id`, if the answer grew.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Option<String> {
        self.ids.push(id);
        let text = tokenizer.decode_answer(&self.ids);
        let end = text.strip_suffix('\u{FFFD}').unwrap_or(&text).len();
        if end > self.shown && text.is_char_boundary(self.shown) {
            let piece = text[self.shown..end].to_string();
            self.shown = end;
            Some(piece)
        } else {
            None
        }
    }

    /// What the final `text` holds beyond the pieces sent.
    pub fn rest(&self, text: &str) -> Option<String> {
        (text.len() > self.shown && text.is_char_boundary(self.shown))
            .then(|| text[self.shown..].to_string())
    }
}

enum Event {
    Piece(String),
    // Boxed: sent once, while pieces are sent per token.
    Done(Box<Result<RunOutput, Failure>>),
}

/// An iterator over the pieces of an answer as they are generated; once it
/// is exhausted, `result` holds the `Generation`. Dropping or closing it
/// (also by leaving a `with` block) stops the generation at the next token.
#[pyclass(module = "blip3", frozen)]
pub struct TextStream {
    events: Mutex<Receiver<Event>>,
    cancel: Arc<AtomicBool>,
    finished: AtomicBool,
    result: Mutex<Option<Py<Generation>>>,
}

impl TextStream {
    /// Starts `job` on its own thread.
    pub(crate) fn start(shared: Arc<Shared>, job: Job) -> PyResult<Self> {
        let (tx, rx) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&cancel);
        std::thread::Builder::new()
            .name("blip3-stream".into())
            .spawn(move || {
                let pieces_tx = tx.clone();
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let mut pieces = Pieces::default();
                    let output = job.run(&shared, &mut |pipeline, choice| {
                        if stop.load(Ordering::Relaxed) {
                            return std::ops::ControlFlow::Break(());
                        }
                        if let Some(piece) = pieces.push(pipeline.tokenizer(), choice.id) {
                            // The iterator is gone: nobody reads on.
                            if pieces_tx.send(Event::Piece(piece)).is_err() {
                                return std::ops::ControlFlow::Break(());
                            }
                        }
                        std::ops::ControlFlow::Continue(())
                    });
                    if let Ok(out) = &output {
                        if let Some(rest) = pieces.rest(&out.text) {
                            let _ = pieces_tx.send(Event::Piece(rest));
                        }
                    }
                    output
                }));
                // A panic in the engine ends this run only, with an error.
                let result = run.unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Err(Failure::Other(format!("the engine panicked: {what}")))
                });
                let _ = tx.send(Event::Done(Box::new(result)));
            })
            .map_err(|e| {
                PyRuntimeError::new_err(format!("cannot start the generation thread: {e}"))
            })?;
        Ok(Self {
            events: Mutex::new(rx),
            cancel,
            finished: AtomicBool::new(false),
            result: Mutex::new(None),
        })
    }

    fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
        self.cancel.store(true, Ordering::SeqCst);
    }
}

#[pymethods]
impl TextStream {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// The next piece of text; waits for it with the GIL released, checking
    /// for Ctrl-C (which stops the generation and raises `KeyboardInterrupt`).
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<String>> {
        loop {
            if self.finished.load(Ordering::SeqCst) {
                return Ok(None);
            }
            let event = py.detach(|| {
                let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
                events.recv_timeout(SIGNAL_POLL)
            });
            match event {
                Ok(Event::Piece(piece)) => return Ok(Some(piece)),
                Ok(Event::Done(result)) => {
                    self.finish();
                    let output = (*result).map_err(|f| f.into_pyerr(py))?;
                    let generation = Py::new(py, Generation::new(py, &output)?)?;
                    *self.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(generation);
                    return Ok(None);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = py.check_signals() {
                        self.finish();
                        return Err(e);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.finish();
                    return Err(blip3_error(
                        py,
                        "the generation thread ended without a result".into(),
                    ));
                }
            }
        }
    }

    /// The finished `Generation` (text, ids, stop reason, timings), or `None`
    /// while the stream is not exhausted.
    #[getter]
    fn result(&self, py: Python<'_>) -> Option<Py<Generation>> {
        self.result
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|g| g.clone_ref(py))
    }

    /// Stops the generation at its next token; the iterator ends.
    fn close(&self) {
        self.finish();
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Leaving a `with` block closes the stream, even on an exception.
    fn __exit__(
        &self,
        _type: Option<Bound<'_, PyAny>>,
        _value: Option<Bound<'_, PyAny>>,
        _traceback: Option<Bound<'_, PyAny>>,
    ) -> bool {
        self.finish();
        false
    }
}

impl Drop for TextStream {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
    }
}
