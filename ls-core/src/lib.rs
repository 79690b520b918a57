//! Layer Security core: seal documents as S/MIME (CMS) for their recipients and open what partners
//! sealed for us, with proof of who sent them.
//!
//! ```no_run
//! use ls_core::{seal, open, Identity, Certificate, SealOptions, OpenOptions};
//! # fn main() -> ls_core::Result<()> {
//! let alice = Identity::load("alice.key", Some("alice.crt".as_ref()), None)?;
//! let bob_cert = Certificate::load("bob.crt")?;
//! let sealed = seal(b"<Invoice/>", &alice, &[bob_cert], &SealOptions {
//!     filename: Some("invoice.xml".into()), ..Default::default() })?;
//!
//! let bob = Identity::load("bob.key", Some("bob.crt".as_ref()), None)?;
//! let alice_cert = Certificate::load("alice.crt")?;
//! let opened = open(&sealed, &OpenOptions { recipient: Some(&bob), sender: Some(&alice_cert),
//!     ..Default::default() })?;
//! assert_eq!(opened.document, b"<Invoice/>");
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod as4;
pub mod asn1;
pub mod bytes;
pub mod cert;
pub mod cms;
pub mod deflate;
pub mod directory;
pub mod enrol;
pub mod error;
mod inflate;
pub mod keys;
pub mod mail;
pub mod mime;
mod oid;
pub mod rollover;
pub mod time;
pub mod transport;

pub use cert::{CertStore, Certificate};
pub use cms::{
    inspect, open, open_file, open_stream, seal, seal_file, seal_stream, Compression,
    ContentCipher, InspectReport, Kek, OpenOptions, Opened, OutputFormat, SealOptions,
    SealedStream, SignatureScheme,
};
pub use error::{Error, ErrorCode, ErrorReport, Result};
pub use keys::builder::{CertPurpose, CertificateBuilder};
pub use keys::{Generated, Identity, KeyType};

/// The library version (the crate version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
