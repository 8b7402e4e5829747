//! Attacks on files: see the crate's doc.
