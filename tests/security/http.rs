//! Attacks on http: see the crate's doc.
