//! Integration tests of ingest-core against the real local Apache Kafka (`make kafka-up`;
//! `make test` starts it). They fail, never skip, when Kafka is unreachable.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]

mod poll;
mod runtime;
mod security;
mod sink;
