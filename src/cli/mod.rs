//! Command implementations that print to the terminal.

pub mod rdb;
pub mod run;
pub mod verify;
