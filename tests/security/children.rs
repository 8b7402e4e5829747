//! Attacks on children: see the crate's doc.
