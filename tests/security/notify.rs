//! Attacks on notify: see the crate's doc.
