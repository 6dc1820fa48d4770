//! Command implementations that print to the terminal.

pub mod check;
pub mod demo;
pub mod finish;
pub mod rdb;
pub mod run;
pub mod tui;
pub mod verify;
