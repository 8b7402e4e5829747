//! The supervisor: the pure state machine (`core`) and the loop that carries
//! out its actions (`run`).

pub mod core;
pub mod run;

pub use self::core::{InitFailure, Phase, Supervisor};
pub use self::run::{Setup, run};
