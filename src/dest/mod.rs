//! The destination writer: turns parsed keys into destination commands and
//! applies them, pipelined, with every reply checked.
//!
//! Data flows `rdb::Event`s → [`Rewriter`] (pure: picks `RESTORE`, an atomic
//! `MULTI` unit of native commands, or a big-key build under a temporary
//! name; handles conflict modes, DB mapping and the TTL gap) → tagged
//! [`ApplyCmd`]s collected in an [`ApplyBatch`] → [`DestWriter`] (windows of
//! pipelined commands on one connection; replies judged in order;
//! collisions and kept keys reported; failures classified as retry or pause
//! in an [`ApplyError`], with the batch left holding exactly what is still
//! to apply).
//!
//! The engine sees a destination through [`Destination`] (`destination`):
//! open it (capabilities, whether it keeps the checkpoint, where the
//! checkpoint stands), apply batches, read the checkpoint again; and lays
//! out what it sends with the destination's [`Layout`] (`layout`: a run of
//! stream commands and its checkpoint move, a pure value).
//!
//! Parts: `caps` (destination version, RDB version, features), `batch` (the
//! command tags and the batch), `rewrite`, `writer`, `error`
//! (classification), `checkpoint` (the record), `layout`, `destination`,
//! `translate` (newer stream commands for older destinations), `stats`
//! (the dashboard's `INFO` figures), `cluster` (a Redis Cluster: slots, the
//! slot map, a command's route, one writer per master), `cleanup` (the
//! checkpoint keys removed after the cut-over).

pub mod batch;
pub mod caps;
pub mod checkpoint;
pub mod cleanup;
pub mod cluster;
pub mod destination;
pub mod error;
pub mod layout;
pub mod rewrite;
pub mod stats;
pub mod translate;
pub mod writer;

pub use batch::{ApplyBatch, ApplyCmd, Build, BuildStep, Conflict, Guard, Origin, ReplyRule};
pub use caps::{dest_info, payload_rdb_version, rdb_version_of, DestCaps, Engine, RedisVersion, ServerVersion};
pub use checkpoint::{CheckpointRecord, CHECKPOINT_DB};
pub use destination::{Destination, OpenError, OpenOptions, Opened};
pub use error::{classify_reply, classify_resp, ApplyError, ErrorClass};
pub use layout::Layout;
pub use rewrite::{format_score, temp_name, RewriteError, RewriteOptions, RewriteStats, RewriteWarning, Rewriter};
pub use translate::{forms_used, translate, Form, Translation, FORMS};
pub use writer::{ApplyReport, Collision, DestWriter, WriterOptions, WriterStats};
