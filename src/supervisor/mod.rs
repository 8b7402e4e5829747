//! The supervisor: the pure state machine (`core`), the edge that turns
//! what threads send into its events (`edge`), the executor that carries
//! out its actions (`execute`), and the loop that ties them (`run`).

pub mod core;
pub mod edge;
mod execute;
pub mod run;

pub use self::core::{InitFailure, Phase, Supervisor};
pub use self::execute::{Pipelines, Setup};
pub use self::run::run;
