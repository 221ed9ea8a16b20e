//! Reading traces back: [`report`] says which stage of which clip keeps memory, [`export`]
//! writes a trace for other tools (Perfetto, CSV, JSON lines).
pub mod export;
pub mod report;
