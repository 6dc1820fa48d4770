//! RESP2 client: an async connection to a Redis server (or twemproxy) on
//! tokio. The redis-protocol codec is the reference its encoder and decoder
//! are tested against.
//!
//! A caller builds [`Cmd`]s (binary-safe argument vectors) and hands them to
//! a [`Connection`], one at a time ([`Connection::send`],
//! [`Connection::query`]) or as a pipeline ([`Connection::pipeline`]: all
//! commands go out without waiting, replies come back in order). The
//! connection writes them as RESP2 arrays, reads replies into a buffer, finds
//! frame boundaries with a small resumable scanner, and decodes each reply
//! into a [`Value`] (zero-copy for bulk strings). Failures are [`RespError`]s that name the address, the
//! command and, for authentication, which credential to fix.
//!
//! Parts: `cmd` (what is sent), `value` (what comes back), `auth`
//! ([`Credentials`] and the meaning of AUTH rejections), `scan` (frame
//! boundaries, no I/O), `connection` (sockets and timeouts), `low_water`
//! (the one socket option set by hand: fewer wake-ups per pipeline), `error`, and
//! [`info`], the one reader of `INFO` replies (fields, keyspace lines,
//! command stats) that the probe, the engine's pollers and the destination's
//! version check all use.

mod auth;
mod cmd;
mod connection;
mod error;
pub mod info;
pub mod low_water;
mod scan;
mod value;

pub use auth::Credentials;
pub use cmd::{ArgSpans, Cmd, UpperName};
pub use connection::{ConnectOptions, Connection};
pub use error::RespError;
pub use value::Value;

/// Arbitrary RESP2 frames as the reference codec models them, for the
/// property tests of the scanner and the decoder.
#[cfg(test)]
mod codec_frames {
    use bytes::Bytes;
    use proptest::prelude::*;
    use redis_protocol::resp2::types::BytesFrame;

    pub(super) fn frame() -> impl Strategy<Value = BytesFrame> {
        let leaf = prop_oneof![
            "[ -~]{0,12}".prop_map(|s| BytesFrame::SimpleString(Bytes::from(s))),
            "[ -~]{0,12}".prop_map(|s| BytesFrame::Error(s.as_str().into())),
            any::<i64>().prop_map(BytesFrame::Integer),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| BytesFrame::BulkString(Bytes::from(b))),
            Just(BytesFrame::Null),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| proptest::collection::vec(inner, 0..6).prop_map(BytesFrame::Array))
    }
}
