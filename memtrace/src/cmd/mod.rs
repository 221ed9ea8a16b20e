//! The subcommands people type, each a thin layer that turns its raw arguments into a validated
//! config and then reads and prints: the live view ([`top`]: interactive on a terminal, a plain
//! table for pipes), the no-privileges status
//! ([`status`]), `run` and `record` around the recorder ([`run`]), the basics people script today
//! ([`swap`], [`doctor`], [`clean`]) and the bundled [`demo`] with its pipeline
//! ([`demo_pipeline`]). `memtrace guard`, `report` and `export` live with their layers.
pub mod clean;
pub mod demo;
pub mod demo_pipeline;
pub mod doctor;
pub mod run;
pub mod status;
pub mod swap;
pub mod top;
