//! Phi-3 tokenizer for BLIP-3, reproducing the *slow* Python `LlamaTokenizer`
//! (`use_fast=False, legacy=False`) that the reference pipeline used (spec §11.3).
//!
//! The stock `tokenizer.json` pipeline differs from the slow tokenizer (it drops the
//! stray `▁` after BOS, and treats leading spaces differently), so the rules are
//! implemented here around a small SentencePiece BPE encoder:
//!
//! * [`sentencepiece`] reads the vocabulary from `tokenizer.model` (or, as a
//!   fallback, from `tokenizer.json`) and runs score-ordered BPE with byte fallback.
//! * [`added`] holds the added tokens (`<|system|>`, `<image>`, …) with their
//!   `rstrip`/`lstrip` flags and splits text on them.
//! * [`marked`] keeps apart the template's text, in which added tokens are
//!   recognised, and clients' text, in which they are not.
//! * [`Tokenizer`] ties them together with the slow-tokenizer rules.

pub mod added;
mod error;
pub mod marked;
mod proto;
pub mod sentencepiece;
mod tokenizer;

pub use error::TokenizerError;
pub use marked::{MarkedText, TextKind};
pub use tokenizer::{Tokenizer, BLIP3_EXTRA_TOKENS};
