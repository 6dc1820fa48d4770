//! RESP2 connection (placeholder until written).
