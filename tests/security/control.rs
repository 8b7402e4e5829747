//! Attacks on control: see the crate's doc.
