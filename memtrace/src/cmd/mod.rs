//! The subcommands that are neither the recorder nor the guard: the live table ([`top`]), the
//! no-privileges status ([`status`]), the basics people script today ([`swap`], [`doctor`],
//! [`clean`]) and the bundled [`demo`] with its pipeline ([`demo_pipeline`]). Each turns its raw
//! arguments into a validated config, then reads and prints.
pub mod clean;
pub mod demo;
pub mod demo_pipeline;
pub mod doctor;
pub mod status;
pub mod swap;
pub mod top;
