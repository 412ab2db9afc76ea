//! Benchmark scorers for the BLIP-3 model card's tables, each matching its
//! reference implementation number for number (spec `eval-protocols.md` §3):
//! CIDEr-D as pycocoevalcap 1.2 computes it (with its PTB tokenizer), VQA
//! accuracy with the official normalisation, OK-VQA stemming, VLMEvalKit's
//! answer extraction, MMBench circular evaluation, MME, POPE and MMMU.
//!
//! Every scorer takes [`Prediction`]s and a reference in the JSON layout that
//! `blip3 score` documents, and returns the corpus metric plus per-item scores.

mod error;
pub mod predictions;

pub use error::MetricsError;
pub use predictions::{parse_predictions, read_predictions, Prediction};
