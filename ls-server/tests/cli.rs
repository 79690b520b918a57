//! What `layersec-server` tells its operator: the help of `init` and `admin usage`, and the
//! error of a party looked up without the PartyId type it was registered with.

mod common;

use common::*;

#[test]
fn init_help_names_every_key_type() {
    let (code, out, err) = run(&["init", "--help"]);
    assert_eq!(code, 0, "{err}");
    for kt in ["ec", "rsa2048", "rsa3072", "rsa4096"] {
        assert!(out.contains(kt), "init --help does not name {kt}:\n{out}");
    }
    // Why one would pick RSA: peers that verify RSA signatures only.
    assert!(out.contains("RSA signatures only"), "{out}");
}

#[test]
fn usage_help_says_the_to_day_is_excluded() {
    let (code, out, err) = run(&["admin", "usage", "--help"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("The day after the period"), "{out}");
    assert!(out.contains("not including, --to"), "{out}");
}

#[test]
fn a_typed_party_looked_up_without_its_type_is_named_with_it() {
    let s = Server::init("typed-party", |c| c);
    const ISO6523: &str = "urn:oasis:names:tc:ebcore:partyid-type:iso6523:0088";
    s.party_with("4035811991021", &["--party-type", ISO6523]);
    // Found with its type.
    let shown = s.admin(&["party", "show", "4035811991021", "--party-type", ISO6523]);
    assert_eq!(shown["party_type"], ISO6523, "{shown}");
    // Without it: not found, and the message says which type to give.
    for op in [
        &["party", "show", "4035811991021"][..],
        &["party", "revoke", "4035811991021"],
        &[
            "party",
            "set-limit",
            "4035811991021",
            "--max-document-bytes",
            "1000000",
        ],
    ] {
        let (code, _, err) = outcome(&s.admin_raw(op));
        assert_eq!(code, 3, "{op:?}: {err}");
        assert!(
            err.contains("not found") && err.contains(&format!("--party-type {ISO6523}")),
            "{op:?}: {err}"
        );
    }
    // A party that does not exist at all gets no such hint.
    let (code, _, err) = outcome(&s.admin_raw(&["party", "show", "nobody"]));
    assert_eq!(code, 3, "{err}");
    assert!(!err.contains("--party-type"), "{err}");
    // The revoke above did not happen.
    let shown = s.admin(&["party", "show", "4035811991021", "--party-type", ISO6523]);
    assert_eq!(shown["status"], "active", "{shown}");
}
