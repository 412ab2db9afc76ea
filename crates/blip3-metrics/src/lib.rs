//! Benchmark scorers for the BLIP-3 model card's tables, each matching its
//! reference implementation number for number (spec `eval-protocols.md` §3):
//! CIDEr-D as pycocoevalcap 1.2 computes it (with its PTB tokenizer), VQA
//! accuracy with the official normalisation, OK-VQA stemming, VLMEvalKit's
//! answer extraction, MMBench circular evaluation, MME, POPE and MMMU.
//!
//! Every scorer takes [`Prediction`]s and a reference in the JSON layout that
//! `blip3 score` documents, and returns the corpus metric plus per-item scores.

pub mod choice;
pub mod cider;
mod error;
pub mod mcq;
pub mod mmbench;
pub mod mme;
pub mod mmmu;
pub mod okvqa;
pub mod pandas_cells;
pub mod pope;
pub mod predictions;
pub mod ptb;
pub mod pytext;
pub mod vlmevalkit;
pub mod vlmevalkit_tsv;
pub mod vqa;
pub mod vqa_files;
pub mod yes_no;

pub use error::MetricsError;
pub use predictions::{parse_predictions, read_predictions, Prediction};
