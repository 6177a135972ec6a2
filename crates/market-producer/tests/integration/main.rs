//! market-producer against the real local Kafka and provider-sim (never the network).

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]

mod alpaca;
mod cli;
mod common;
mod finnhub;
mod polygon;
mod repair;
mod replay;
