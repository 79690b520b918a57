//! The message layer: ebMS3/AS4 messages (SOAP with attachments) secured with WS-Security as the
//! eDelivery AS4 profile and the gateways in the field do.
//!
//! - `xml`: bounded parsing (no DTDs, no entities), namespaces, Id lookup, escaping for writers.
//! - `c14n`: exclusive XML canonicalisation (with InclusiveNamespaces PrefixList).
//! - `model`: the ebMS3 header (UserMessage, SignalMessage: PullRequest, Receipt, Error).
//! - `envelope`: SOAP 1.2 building, SOAP 1.1/1.2 reading, mustUnderstand.
//! - `package`: SOAP with attachments (multipart/related), gzip payload compression.
//! - `exchange`: the push / pull / receipt exchange with a Messaging Service, both sides.
//! - `wss`: WS-Security signatures (XMLDSig) and payload encryption (XML Encryption 1.1).

pub mod c14n;
pub mod coordination;
pub mod envelope;
pub mod exchange;
pub mod inspect;
pub mod message;
pub mod model;
pub mod package;
pub mod spool;
pub mod wss;
pub mod xml;
