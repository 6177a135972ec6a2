//! Integration tests of sec-producer (one test binary): the CLI and exit-code contract, and the
//! producer end to end against provider-sim and the real local Kafka (`make test` starts it;
//! they fail, never skip, when it is unreachable).

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]

mod cli;
mod sec;
