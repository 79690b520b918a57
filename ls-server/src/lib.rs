//! The Layer Security Messaging Service: accepts AS4 messages pushed over TLS, authenticates
//! each by its signature against the sender's registered certificate, routes it to the
//! recipient's MPC, holds it until the recipient pulls it, and records the recipient's receipt.
//!
//! Layers: [`http`] (TLS and HTTP/1.1 with limits and timeouts) → [`endpoint`] (the AS4
//! push / pull / receipt exchange) → [`store`] (accounts, parties, messages). [`admin`] holds
//! the provider's operations, used by the command line and the admin HTTP API. [`enrol`] is
//! installation with one-time codes: issuing them, and the enrolment endpoint beside the AS4
//! one. [`email`] is the e-mail gateway (SOAP over e-mail): the intake mailbox handled through
//! the same endpoint, and deliveries by mail to parties registered with a mail address.

#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod directory;
pub mod email;
pub mod endpoint;
pub mod enrol;
pub mod http;
pub mod log;
pub mod metrics;
pub mod ratelimit;
pub mod retention;
pub mod rollover;
pub mod service_key;
pub mod store;
