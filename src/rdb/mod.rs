//! Streaming RDB parser (being written).
pub mod event;
pub use event::*;
