//! For `scripts/bench-pkcs11.sh`: an EC P-256 key generated on a PKCS#11 token as
//! non-extractable, with a certificate the token key signed, for a service's or a party's
//! `[identity]` (the token, module and PIN from `LOADGEN_PKCS11_TOKEN`, `LOADGEN_PKCS11_MODULE`
//! and `LOADGEN_PKCS11_PIN`, as for `loadgen`'s parties).
//!
//! usage: token_identity <label> <certificate out>
//! The key's URI is `pkcs11:token=<token>;object=<label>;type=private`.

#[allow(dead_code)]
mod common;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 || std::env::var("LOADGEN_PKCS11_MODULE").is_err() {
        eprintln!("usage: LOADGEN_PKCS11_MODULE=… LOADGEN_PKCS11_TOKEN=… LOADGEN_PKCS11_PIN=… token_identity <label> <certificate out>");
        std::process::exit(2);
    }
    let ident = common::party_identity(&args[1]);
    std::fs::write(&args[2], ident.certificate().to_pem()).unwrap();
}
