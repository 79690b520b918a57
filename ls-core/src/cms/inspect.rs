//! `inspect`: the structure of any CMS/S-MIME object as JSON — layers, algorithms, recipients,
//! signers — decrypting and verifying only when given the keys to do so.

use super::OpenOptions;
use crate::json::Json;

/// Describe `input`. With `opts.recipient` it looks inside layers encrypted for us; with
/// `opts.sender`/`opts.partners` it verifies signatures (reported, not fatal). Never fails: a
/// problem ends the walk and is reported in the `error` member.
pub fn inspect(input: &[u8], opts: &OpenOptions) -> Json {
    let mut o = opts.clone();
    // An old message is still worth looking at; `verified` reports the signature itself.
    o.allow_expired = true;
    o.allow_unsigned = true;
    super::open::inspect(input, &o)
}
