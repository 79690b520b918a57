//! The C API driven from Rust: argument checks, ownership rules, the per-thread error message,
//! versioned options structs, and a seal/open round trip through the exported functions.

// Out-parameters start as garbage pointers such as `1 as *mut T` on purpose: the library must
// overwrite them without reading them.
#![allow(clippy::manual_dangling_ptr)]

use layersec::*;
use std::ffi::{c_char, CStr, CString};
use std::mem::{offset_of, size_of};
use std::ptr::{null, null_mut};

const NULL_ARGUMENT: ls_result = 100;
const INVALID_ARGUMENT: ls_result = 101;

fn s(p: *const c_char) -> String {
    assert!(!p.is_null());
    unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string()
}

fn msg() -> String {
    s(ls_last_error_message())
}

fn bytes_vec(b: &ls_bytes) -> Vec<u8> {
    assert!(!b.data.is_null());
    unsafe { std::slice::from_raw_parts(b.data, b.len) }.to_vec()
}

/// A generated identity (EC: fast) and its certificate handle.
struct Party {
    id: *mut ls_identity,
    cert: *mut ls_cert,
}

impl Party {
    fn new(name: &str, key_type: ls_key_type) -> Party {
        let name = CString::new(name).unwrap();
        let mut id = null_mut();
        let mut cert = null_mut();
        unsafe {
            assert_eq!(
                ls_identity_generate(name.as_ptr(), key_type, 30, null(), &mut id),
                0,
                "{}",
                msg()
            );
            assert_eq!(ls_identity_cert(id, &mut cert), 0, "{}", msg());
        }
        Party { id, cert }
    }
}

impl Drop for Party {
    fn drop(&mut self) {
        unsafe {
            ls_cert_free(self.cert);
            ls_identity_free(self.id);
        }
    }
}

fn seal(
    from: &Party,
    to: &Party,
    doc: &[u8],
    opts: *const ls_seal_options,
) -> (ls_result, Vec<u8>) {
    let recipients = [to.cert as *const ls_cert];
    let mut out = ls_bytes {
        data: 1 as *mut u8,
        len: 7,
    }; // garbage: must be reset
    let rc = unsafe {
        ls_seal(
            from.id,
            recipients.as_ptr(),
            1,
            doc.as_ptr(),
            doc.len(),
            opts,
            &mut out,
        )
    };
    if rc != 0 {
        assert!(out.data.is_null() && out.len == 0);
        return (rc, Vec::new());
    }
    let v = bytes_vec(&out);
    unsafe { ls_bytes_free(&mut out) };
    (rc, v)
}

fn open(me: &Party, sealed: &[u8], opts: *const ls_open_options) -> (ls_result, *mut ls_opened) {
    let mut out = 1 as *mut ls_opened; // garbage: must be reset
    let rc = unsafe { ls_open(me.id, sealed.as_ptr(), sealed.len(), opts, &mut out) };
    assert_eq!(rc == 0, !out.is_null());
    (rc, out)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn open_opts(sender: &Party) -> ls_open_options {
    let mut o: ls_open_options = unsafe { std::mem::zeroed() };
    unsafe { ls_open_options_init(&mut o) };
    o.sender = sender.cert;
    o
}

#[test]
fn round_trip_through_the_c_api() {
    let alice = Party::new("alice", LS_KEY_RSA_2048);
    let bob = Party::new("bob", LS_KEY_EC_P256);
    let doc = b"<Invoice>42</Invoice>";
    let filename = CString::new("../invoice.xml").unwrap();
    let mut so: ls_seal_options = unsafe { std::mem::zeroed() };
    unsafe { ls_seal_options_init(&mut so) };
    so.filename = filename.as_ptr();
    // A stated signing time (within the signer certificate's validity, which is checked).
    let when = now() + 5;
    so.signing_time = when;
    so.flags = LS_SEAL_PSS;
    let (rc, sealed) = seal(&alice, &bob, doc, &so);
    assert_eq!(rc, 0, "{}", msg());
    assert_eq!(msg(), "");

    let oo = open_opts(&alice);
    let (rc, opened) = open(&bob, &sealed, &oo);
    assert_eq!(rc, 0, "{}", msg());
    unsafe {
        let mut data = null();
        let mut len = 0;
        assert_eq!(ls_opened_document(opened, &mut data, &mut len), 0);
        assert_eq!(std::slice::from_raw_parts(data, len), doc);
        assert_eq!(s(ls_opened_filename(opened)), "../invoice.xml");
        assert_eq!(s(ls_opened_safe_filename(opened)), "invoice.xml");
        assert_eq!(s(ls_opened_mime_type(opened)), "application/xml");
        assert_eq!(s(ls_cert_subject(ls_opened_signer(opened))), "CN=alice");
        assert_eq!(ls_opened_signing_time(opened), when);
        assert_eq!(ls_opened_was_encrypted(opened), 1);
        ls_opened_free(opened);
    }

    // The wrong sender is refused, with a message and its code.
    let (rc, opened) = open(&bob, &sealed, &open_opts(&bob));
    assert!(opened.is_null());
    assert_eq!(s(ls_result_name(rc)), "LS_ERR_SIGNER_MISMATCH", "{}", msg());
    assert!(!msg().is_empty());

    // A tampered message is refused.
    let mut bad = sealed.clone();
    let n = bad.len();
    bad[n - 40] ^= 1;
    let (rc, _) = open(&bob, &bad, &oo);
    assert_ne!(rc, 0);

    // Not addressed to alice.
    let (rc, _) = open(&alice, &sealed, &open_opts(&alice));
    assert_eq!(s(ls_result_name(rc)), "LS_ERR_NOT_A_RECIPIENT", "{}", msg());

    // Inspect: JSON, NUL-terminated.
    let mut json = ls_bytes {
        data: null_mut(),
        len: 0,
    };
    unsafe {
        assert_eq!(
            ls_inspect(sealed.as_ptr(), sealed.len(), bob.id, alice.cert, &mut json),
            0
        );
        assert_eq!(*json.data.add(json.len), 0);
        let text = String::from_utf8(bytes_vec(&json)).unwrap();
        assert!(
            text.starts_with('{') && text.contains("\"layers\""),
            "{text}"
        );
        assert!(text.contains("\"verified\": true"), "{text}");
        ls_bytes_free(&mut json);
    }
}

#[test]
fn options_defaults_and_formats() {
    let alice = Party::new("alice", LS_KEY_EC_P256);
    let bob = Party::new("bob", LS_KEY_EC_P256);
    // NULL options: defaults (DER).
    let (rc, der) = seal(&alice, &bob, b"x", null());
    assert_eq!(rc, 0, "{}", msg());
    assert_eq!(der[0], 0x30);
    for (flag, start) in [
        (LS_SEAL_PEM, &b"-----BEGIN CMS-----"[..]),
        (LS_SEAL_SMIME, b"MIME-Version"),
    ] {
        let mut so: ls_seal_options = unsafe { std::mem::zeroed() };
        unsafe { ls_seal_options_init(&mut so) };
        so.flags = flag | LS_SEAL_CBC | LS_SEAL_FORCE_COMPRESS;
        let (rc, out) = seal(&alice, &bob, b"text text text text", &so);
        assert_eq!(rc, 0, "{}", msg());
        assert!(out.starts_with(start));
        let (rc, opened) = open(&bob, &out, &open_opts(&alice));
        assert_eq!(rc, 0, "{}", msg());
        assert_eq!(unsafe { ls_opened_filename(opened) }, null());
        assert_eq!(
            s(unsafe { ls_opened_mime_type(opened) }),
            "application/octet-stream"
        );
        unsafe { ls_opened_free(opened) };
    }
    // Contradictory or unknown flags, out-of-range values.
    for (flags, level) in [
        (LS_SEAL_PEM | LS_SEAL_SMIME, 0),
        (LS_SEAL_NO_COMPRESS | LS_SEAL_FORCE_COMPRESS, 0),
        (1 << 20, 0),
        (0, 10),
    ] {
        let mut so: ls_seal_options = unsafe { std::mem::zeroed() };
        unsafe { ls_seal_options_init(&mut so) };
        so.flags = flags;
        so.compression_level = level;
        assert_eq!(seal(&alice, &bob, b"x", &so).0, INVALID_ARGUMENT);
    }
    let mut oo = open_opts(&alice);
    oo.flags = 1 << 30;
    assert_eq!(open(&bob, &der, &oo).0, INVALID_ARGUMENT);
    assert!(msg().contains("unknown bits"), "{}", msg());
    // A KEK needs both halves.
    let mut oo = open_opts(&alice);
    oo.kek_id = b"id".as_ptr();
    oo.kek_id_len = 2;
    assert_eq!(open(&bob, &der, &oo).0, INVALID_ARGUMENT);
    // NULL open options expect no one: a signed message cannot be verified.
    let (rc, _) = open(&bob, &der, null());
    assert_eq!(rc, INVALID_ARGUMENT, "{}", msg());
    assert!(msg().contains("no sender"), "{}", msg());
    // A partner store instead of a sender.
    let mut store = null_mut();
    unsafe {
        assert_eq!(ls_certstore_new(&mut store), 0);
        assert_eq!(
            ls_certstore_add_partner(store, alice.cert, c"alice".as_ptr()),
            0
        );
    }
    let mut oo = open_opts(&alice);
    oo.sender = null();
    oo.partners = store;
    let (rc, opened) = open(&bob, &der, &oo);
    assert_eq!(rc, 0, "{}", msg());
    unsafe {
        ls_opened_free(opened);
        ls_certstore_free(store);
    }
}

#[test]
fn older_smaller_options_structs_are_honoured() {
    let alice = Party::new("alice", LS_KEY_EC_P256);
    let bob = Party::new("bob", LS_KEY_EC_P256);
    let mut so: ls_seal_options = unsafe { std::mem::zeroed() };
    unsafe { ls_seal_options_init(&mut so) };
    so.compression_level = 99; // invalid, but beyond what an older caller knows
    so.signing_time = 12345;
    so.struct_size = offset_of!(ls_seal_options, compression_level) as u32;
    let (rc, sealed) = seal(&alice, &bob, b"doc", &so);
    assert_eq!(rc, 0, "{}", msg());
    so.struct_size = size_of::<ls_seal_options>() as u32;
    assert_eq!(seal(&alice, &bob, b"doc", &so).0, INVALID_ARGUMENT);

    // An older caller that does not know `sender`: it is not read, so nobody is expected.
    let mut oo = open_opts(&alice);
    oo.struct_size = offset_of!(ls_open_options, sender) as u32;
    let (rc, _) = open(&bob, &sealed, &oo);
    assert_eq!(rc, INVALID_ARGUMENT, "{}", msg());
    assert!(msg().contains("no sender"), "{}", msg());
    oo.struct_size = size_of::<ls_open_options>() as u32;
    let (rc, opened) = open(&bob, &sealed, &oo);
    assert_eq!(rc, 0, "{}", msg());
    // The signing time was not read either (0 = now).
    let t = unsafe { ls_opened_signing_time(opened) };
    assert!((now() - t).abs() < 120, "{t}");
    unsafe { ls_opened_free(opened) };

    // Too small to be any version, or implausibly large (an uninitialised struct): refused
    // without reading past the struct.
    for size in [0, 4, 1 << 30] {
        oo.struct_size = size;
        assert_eq!(open(&bob, &sealed, &oo).0, INVALID_ARGUMENT);
        assert!(msg().contains("struct_size"), "{}", msg());
    }
}

#[test]
fn profiles_through_the_c_api() {
    let alice = Party::new("alice", LS_KEY_RSA_2048);
    let bob = Party::new("bob", LS_KEY_RSA_2048);
    let carol = Party::new("carol", LS_KEY_EC_P256);
    let doc = b"<Invoice>42</Invoice>";
    let mut so: ls_seal_options = unsafe { std::mem::zeroed() };
    unsafe { ls_seal_options_init(&mut so) };
    assert_eq!(so.profile, LS_PROFILE_NONE);
    so.profile = LS_PROFILE_LEGACY_AS2;
    let (rc, sealed) = seal(&alice, &bob, doc, &so);
    assert_eq!(rc, 0, "{}", msg());

    // RSA key transport OIDs in the (DER) EnvelopedData: rsaEncryption, id-RSAES-OAEP.
    let has = |hay: &[u8], oid_last: u8| {
        let oid = [
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, oid_last,
        ];
        hay.windows(oid.len()).any(|w| w == oid)
    };
    assert!(has(&sealed, 0x01) && !has(&sealed, 0x07));
    let document = |o: *mut ls_opened| -> Vec<u8> {
        let (mut p, mut n) = (null(), 0);
        assert_eq!(unsafe { ls_opened_document(o, &mut p, &mut n) }, 0);
        unsafe { std::slice::from_raw_parts(p, n) }.to_vec()
    };
    let mut oo = open_opts(&alice);
    for (profile, flags, ok) in [
        (LS_PROFILE_NONE, 0, true),
        (LS_PROFILE_LEGACY_AS2, 0, true),
        (LS_PROFILE_LEGACY_AS2, LS_OPEN_REJECT_3DES, true),
        (LS_PROFILE_MODERN, 0, false),
        (LS_PROFILE_LEGACY_AS2, LS_OPEN_REJECT_LEGACY, false),
    ] {
        oo.profile = profile;
        oo.flags = flags;
        let (rc, opened) = open(&bob, &sealed, &oo);
        if ok {
            assert_eq!(rc, 0, "{profile} {flags}: {}", msg());
            assert_eq!(document(opened), doc);
            unsafe { ls_opened_free(opened) };
        } else {
            assert_eq!(rc, 208, "{profile} {flags}: {}", msg()); // LS_ERR_WEAK_ALGORITHM
        }
    }
    oo.profile = 3;
    oo.flags = 0;
    assert_eq!(open(&bob, &sealed, &oo).0, INVALID_ARGUMENT);
    assert!(msg().contains("LS_PROFILE_"), "{}", msg());

    // Flags add single settings: OAEP-SHA-1 over legacy-as2.
    so.flags = LS_SEAL_RSA_OAEP_SHA1;
    let (rc, sealed) = seal(&alice, &bob, doc, &so);
    assert_eq!(rc, 0, "{}", msg());
    assert!(has(&sealed, 0x07) && !has(&sealed, 0x01));
    oo.profile = LS_PROFILE_NONE;
    let (rc, opened) = open(&bob, &sealed, &oo);
    assert_eq!(rc, 0, "{}", msg());
    assert_eq!(document(opened), doc);
    unsafe { ls_opened_free(opened) };
    so.flags = LS_SEAL_RSA_OAEP_SHA1 | LS_SEAL_RSA_PKCS1V15;
    assert_eq!(seal(&alice, &bob, doc, &so).0, INVALID_ARGUMENT);

    // EC keys: refused, with the reason.
    so.flags = 0;
    let (rc, _) = seal(&alice, &carol, doc, &so);
    assert_eq!(rc, INVALID_ARGUMENT);
    assert!(
        msg().contains("legacy-as2 needs an RSA certificate"),
        "{}",
        msg()
    );
    let (rc, _) = seal(&carol, &bob, doc, &so);
    assert_eq!(rc, INVALID_ARGUMENT);
    assert!(
        msg().contains("legacy-as2 needs an RSA identity (this one is EC P-256)"),
        "{}",
        msg()
    );
    so.profile = 7;
    assert_eq!(seal(&alice, &bob, doc, &so).0, INVALID_ARGUMENT);

    // An older caller's struct ends before `profile`: not read (no profile).
    so.profile = LS_PROFILE_LEGACY_AS2;
    so.struct_size = offset_of!(ls_seal_options, profile) as u32;
    let (rc, sealed) = seal(&alice, &bob, doc, &so);
    assert_eq!(rc, 0, "{}", msg());
    oo.profile = LS_PROFILE_MODERN;
    let (rc, opened) = open(&bob, &sealed, &oo);
    assert_eq!(rc, 0, "modern output: {}", msg());
    unsafe { ls_opened_free(opened) };
    oo.struct_size = offset_of!(ls_open_options, profile) as u32;
    let (rc, sealed) = {
        so.struct_size = size_of::<ls_seal_options>() as u32;
        seal(&alice, &bob, doc, &so)
    };
    assert_eq!(rc, 0, "{}", msg());
    let (rc, opened) = open(&bob, &sealed, &oo);
    assert_eq!(rc, 0, "the open profile was not read: {}", msg());
    unsafe { ls_opened_free(opened) };
}

#[test]
fn newer_larger_options_structs_need_zero_unknown_fields() {
    let alice = Party::new("alice", LS_KEY_EC_P256);
    let bob = Party::new("bob", LS_KEY_EC_P256);
    #[repr(C)]
    struct Newer {
        base: ls_seal_options,
        future: u64,
    }
    let mut n = Newer {
        base: unsafe { std::mem::zeroed() },
        future: 0,
    };
    unsafe { ls_seal_options_init(&mut n.base) };
    n.base.struct_size = size_of::<Newer>() as u32;
    let opts = &n as *const Newer as *const ls_seal_options;
    assert_eq!(seal(&alice, &bob, b"doc", opts).0, 0, "{}", msg());
    n.future = 1;
    let opts = &n as *const Newer as *const ls_seal_options;
    assert_eq!(seal(&alice, &bob, b"doc", opts).0, INVALID_ARGUMENT);
    assert!(msg().contains("newer layersec.h"), "{}", msg());
}

#[test]
fn null_arguments_are_reported_by_name() {
    let alice = Party::new("alice", LS_KEY_EC_P256);
    let doc = b"doc";
    unsafe {
        let mut id = 1 as *mut ls_identity;
        assert_eq!(
            ls_identity_load(null(), null(), null(), &mut id),
            NULL_ARGUMENT
        );
        assert!(id.is_null(), "*out is set to NULL first");
        assert_eq!(msg(), "missing argument: key_path is NULL");
        assert_eq!(
            ls_identity_load(c"k".as_ptr(), null(), null(), null_mut()),
            NULL_ARGUMENT
        );
        assert!(msg().contains("out"));
        let mut id = 1 as *mut ls_identity;
        assert_eq!(
            ls_identity_from_memory(null(), 5, null(), 0, null(), &mut id),
            NULL_ARGUMENT
        );
        assert!(id.is_null() && msg().contains("key"));
        assert_eq!(
            ls_identity_generate(null(), LS_KEY_EC_P256, 1, null(), &mut id),
            NULL_ARGUMENT
        );
        assert!(msg().contains("party_id"));

        let mut cert = 1 as *mut ls_cert;
        assert_eq!(ls_cert_load(null(), &mut cert), NULL_ARGUMENT);
        assert!(cert.is_null());
        assert_eq!(ls_cert_from_memory(null(), 3, &mut cert), NULL_ARGUMENT);
        assert_eq!(ls_identity_cert(null(), &mut cert), NULL_ARGUMENT);
        assert!(msg().contains("identity"));
        let mut b = ls_bytes {
            data: 1 as *mut u8,
            len: 1,
        };
        assert_eq!(ls_cert_to_pem(null(), &mut b), NULL_ARGUMENT);
        assert!(b.data.is_null() && b.len == 0);
        assert_eq!(ls_identity_key_pem(null(), &mut b), NULL_ARGUMENT);
        assert_eq!(ls_identity_csr_pem(null(), &mut b), NULL_ARGUMENT);

        let mut store = 1 as *mut ls_certstore;
        assert_eq!(ls_certstore_load_dir(null(), &mut store), NULL_ARGUMENT);
        assert!(store.is_null());
        assert_eq!(ls_certstore_new(null_mut()), NULL_ARGUMENT);
        assert_eq!(
            ls_certstore_add_partner(null_mut(), alice.cert, null()),
            NULL_ARGUMENT
        );
        assert!(msg().contains("store"));
        assert_eq!(
            ls_certstore_add_anchor(null_mut(), alice.cert),
            NULL_ARGUMENT
        );

        let recipients = [alice.cert as *const ls_cert, null()];
        assert_eq!(
            ls_seal(
                null(),
                recipients.as_ptr(),
                1,
                doc.as_ptr(),
                3,
                null(),
                &mut b
            ),
            NULL_ARGUMENT
        );
        assert!(msg().contains("signer"));
        assert_eq!(
            ls_seal(
                alice.id,
                recipients.as_ptr(),
                2,
                doc.as_ptr(),
                3,
                null(),
                &mut b
            ),
            NULL_ARGUMENT
        );
        assert!(msg().contains("recipients[1]"), "{}", msg());
        assert_eq!(
            ls_seal(alice.id, null(), 1, doc.as_ptr(), 3, null(), &mut b),
            NULL_ARGUMENT
        );
        assert_eq!(
            ls_seal(alice.id, recipients.as_ptr(), 1, null(), 3, null(), &mut b),
            NULL_ARGUMENT
        );
        assert!(msg().contains("doc"));
        assert_eq!(
            ls_seal(
                alice.id,
                recipients.as_ptr(),
                1,
                doc.as_ptr(),
                3,
                null(),
                null_mut()
            ),
            NULL_ARGUMENT
        );

        let mut opened = 1 as *mut ls_opened;
        assert_eq!(
            ls_open(null(), null(), 10, null(), &mut opened),
            NULL_ARGUMENT
        );
        assert!(opened.is_null() && msg().contains("in"));
        assert_eq!(
            ls_open(null(), doc.as_ptr(), 3, null(), null_mut()),
            NULL_ARGUMENT
        );
        let mut data = 1 as *const u8;
        let mut len = 9;
        assert_eq!(
            ls_opened_document(null(), &mut data, &mut len),
            NULL_ARGUMENT
        );
        assert!(data.is_null() && len == 0);
        assert_eq!(ls_inspect(null(), 1, null(), null(), &mut b), NULL_ARGUMENT);
        assert_eq!(
            ls_inspect(doc.as_ptr(), 3, null(), null(), null_mut()),
            NULL_ARGUMENT
        );

        // Accessors on NULL return their "absent" value.
        assert!(ls_cert_subject(null()).is_null());
        assert!(ls_opened_filename(null()).is_null());
        assert!(ls_opened_safe_filename(null()).is_null());
        assert!(ls_opened_mime_type(null()).is_null());
        assert!(ls_opened_signer(null()).is_null());
        assert_eq!(ls_opened_signing_time(null()), i64::MIN);
        assert_eq!(ls_opened_was_encrypted(null()), 0);
        ls_seal_options_init(null_mut());
        ls_open_options_init(null_mut());
    }
}

#[test]
fn empty_buffers_may_be_null() {
    let alice = Party::new("alice", LS_KEY_EC_P256);
    let bob = Party::new("bob", LS_KEY_EC_P256);
    let recipients = [bob.cert as *const ls_cert];
    let mut b = ls_bytes {
        data: null_mut(),
        len: 0,
    };
    unsafe {
        assert_eq!(
            ls_seal(alice.id, recipients.as_ptr(), 1, null(), 0, null(), &mut b),
            0,
            "{}",
            msg()
        );
        let sealed = bytes_vec(&b);
        ls_bytes_free(&mut b);
        let (rc, opened) = open(&bob, &sealed, &open_opts(&alice));
        assert_eq!(rc, 0, "{}", msg());
        let mut data = null();
        let mut len = 1;
        assert_eq!(ls_opened_document(opened, &mut data, &mut len), 0);
        assert_eq!(len, 0);
        assert!(!data.is_null());
        ls_opened_free(opened);
        let mut opened = null_mut();
        assert_eq!(
            s(ls_result_name(ls_open(
                bob.id,
                null(),
                0,
                null(),
                &mut opened
            ))),
            "LS_ERR_TRUNCATED"
        );
        // Zero recipients need LS_SEAL_ENCRYPT_TO_SELF.
        assert_eq!(
            ls_seal(alice.id, null(), 0, null(), 0, null(), &mut b),
            INVALID_ARGUMENT
        );
        let mut so: ls_seal_options = std::mem::zeroed();
        ls_seal_options_init(&mut so);
        so.flags = LS_SEAL_ENCRYPT_TO_SELF;
        assert_eq!(
            ls_seal(alice.id, null(), 0, null(), 0, &so, &mut b),
            0,
            "{}",
            msg()
        );
        ls_bytes_free(&mut b);
    }
}

#[test]
fn invalid_utf8_is_an_invalid_argument() {
    let bad = [0x66u8, 0xff, 0xfe, 0];
    let mut cert = null_mut();
    unsafe {
        assert_eq!(
            ls_cert_load(bad.as_ptr().cast(), &mut cert),
            INVALID_ARGUMENT
        );
        assert_eq!(msg(), "invalid argument: path is not valid UTF-8");
        let mut id = null_mut();
        assert_eq!(
            ls_identity_generate(bad.as_ptr().cast(), LS_KEY_EC_P256, 1, null(), &mut id),
            INVALID_ARGUMENT
        );
        assert_eq!(
            ls_identity_generate(c"x".as_ptr(), 99, 1, null(), &mut id),
            INVALID_ARGUMENT
        );
        assert!(msg().contains("key_type 99"));
    }
}

#[test]
fn bytes_free_twice_and_free_null_are_harmless() {
    let alice = Party::new("alice", LS_KEY_EC_P256);
    let mut b = ls_bytes {
        data: null_mut(),
        len: 0,
    };
    unsafe {
        assert_eq!(ls_cert_to_pem(alice.cert, &mut b), 0);
        assert!(bytes_vec(&b).starts_with(b"-----BEGIN CERTIFICATE-----"));
        assert_eq!(*b.data.add(b.len), 0, "NUL-terminated");
        ls_bytes_free(&mut b);
        assert!(b.data.is_null() && b.len == 0);
        ls_bytes_free(&mut b);
        ls_bytes_free(null_mut());
        ls_identity_free(null_mut());
        ls_cert_free(null_mut());
        ls_certstore_free(null_mut());
        ls_opened_free(null_mut());
    }
}

#[test]
fn generated_identity_exports_and_reloads() {
    let pw = c"secret";
    let mut id = null_mut();
    let mut key = ls_bytes {
        data: null_mut(),
        len: 0,
    };
    let mut csr = ls_bytes {
        data: null_mut(),
        len: 0,
    };
    let mut pem = ls_bytes {
        data: null_mut(),
        len: 0,
    };
    let mut cert = null_mut();
    unsafe {
        assert_eq!(
            ls_identity_generate(c"acme".as_ptr(), LS_KEY_EC_P256, 10, pw.as_ptr(), &mut id),
            0
        );
        assert_eq!(ls_identity_key_pem(id, &mut key), 0);
        assert!(bytes_vec(&key).starts_with(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        assert_eq!(ls_identity_csr_pem(id, &mut csr), 0);
        assert!(bytes_vec(&csr).starts_with(b"-----BEGIN CERTIFICATE REQUEST-----"));
        assert_eq!(ls_identity_cert(id, &mut cert), 0);
        assert_eq!(s(ls_cert_subject(cert)), "CN=acme");
        assert_eq!(ls_cert_to_pem(cert, &mut pem), 0);

        let mut again = null_mut();
        assert_eq!(
            ls_identity_from_memory(
                key.data,
                key.len,
                pem.data,
                pem.len,
                pw.as_ptr(),
                &mut again
            ),
            0,
            "{}",
            msg()
        );
        // A loaded identity has no generated key PEM to export.
        let mut b = ls_bytes {
            data: null_mut(),
            len: 0,
        };
        assert_eq!(ls_identity_key_pem(again, &mut b), INVALID_ARGUMENT);
        ls_identity_free(again);
        assert_eq!(
            ls_identity_from_memory(
                key.data,
                key.len,
                pem.data,
                pem.len,
                c"zebra42".as_ptr(),
                &mut again
            ),
            103
        );
        assert!(again.is_null());
        assert_eq!(s(ls_result_name(103)), "LS_ERR_BAD_PASSWORD");
        assert!(
            !msg().contains("secret") && !msg().contains("zebra42"),
            "{}",
            msg()
        );

        // Files too, and a certificate store from a folder.
        let dir = ls_tests::tempdir("ffi-api");
        std::fs::write(dir.join("acme.key"), bytes_vec(&key)).unwrap();
        std::fs::write(dir.join("acme.pem"), bytes_vec(&pem)).unwrap();
        let kp = CString::new(dir.join("acme.key").to_str().unwrap()).unwrap();
        let cp = CString::new(dir.join("acme.pem").to_str().unwrap()).unwrap();
        assert_eq!(
            ls_identity_load(kp.as_ptr(), cp.as_ptr(), pw.as_ptr(), &mut again),
            0,
            "{}",
            msg()
        );
        ls_identity_free(again);
        let mut c2 = null_mut();
        assert_eq!(ls_cert_load(cp.as_ptr(), &mut c2), 0);
        ls_cert_free(c2);
        let mut store = null_mut();
        let dp = CString::new(dir.to_str().unwrap()).unwrap();
        assert_eq!(
            ls_certstore_load_dir(dp.as_ptr(), &mut store),
            0,
            "{}",
            msg()
        );
        ls_certstore_free(store);
        let missing = CString::new(dir.join("nope.pem").to_str().unwrap()).unwrap();
        assert_eq!(
            s(ls_result_name(ls_cert_load(missing.as_ptr(), &mut c2))),
            "LS_ERR_IO"
        );
        drop(dir);

        ls_cert_free(cert);
        ls_bytes_free(&mut key);
        ls_bytes_free(&mut csr);
        ls_bytes_free(&mut pem);
        ls_identity_free(id);
    }
}

#[test]
fn last_error_message_is_per_thread() {
    let mut cert = null_mut();
    unsafe { assert_eq!(ls_cert_load(null(), &mut cert), NULL_ARGUMENT) };
    let here = msg();
    assert_eq!(here, "missing argument: path is NULL");
    std::thread::spawn(|| {
        assert_eq!(msg(), "", "a new thread starts without a message");
        let mut cert = null_mut();
        let bad = [0xffu8, 0];
        unsafe {
            assert_eq!(
                ls_cert_load(bad.as_ptr().cast(), &mut cert),
                INVALID_ARGUMENT
            )
        };
        assert_eq!(msg(), "invalid argument: path is not valid UTF-8");
    })
    .join()
    .unwrap();
    assert_eq!(
        msg(),
        here,
        "another thread's failure does not touch this thread's message"
    );
    // Success clears it.
    let mut store = null_mut();
    unsafe {
        assert_eq!(ls_certstore_new(&mut store), 0);
        ls_certstore_free(store);
    }
    assert_eq!(msg(), "");
}

#[test]
fn version_matches_the_crate() {
    assert_eq!(s(ls_version()), env!("CARGO_PKG_VERSION"));
    assert_eq!(s(ls_result_name(0)), "LS_OK");
}

#[test]
fn handles_are_shared_across_threads() {
    let alice = Party::new("alice", LS_KEY_EC_P256);
    let bob = Party::new("bob", LS_KEY_EC_P256);
    let (rc, sealed) = seal(&alice, &bob, b"shared", null());
    assert_eq!(rc, 0, "{}", msg());
    // Raw pointers are not Send; the header promises these handles may be shared.
    struct Shared(*const ls_identity, *const ls_cert);
    unsafe impl Sync for Shared {}
    impl Shared {
        fn get(&self) -> (*const ls_identity, *const ls_cert) {
            (self.0, self.1)
        }
    }
    let shared = Shared(bob.id, alice.cert);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let (me, sender) = shared.get();
                for _ in 0..5 {
                    let mut o: ls_open_options = unsafe { std::mem::zeroed() };
                    unsafe { ls_open_options_init(&mut o) };
                    o.sender = sender;
                    let mut opened = null_mut();
                    let rc = unsafe { ls_open(me, sealed.as_ptr(), sealed.len(), &o, &mut opened) };
                    assert_eq!(rc, 0, "{}", msg());
                    let (mut data, mut len) = (null(), 0);
                    unsafe {
                        assert_eq!(ls_opened_document(opened, &mut data, &mut len), 0);
                        assert_eq!(std::slice::from_raw_parts(data, len), b"shared");
                        ls_opened_free(opened);
                    }
                }
            });
        }
    });
}

/// A reader over a byte slice, for `ls_read_callback`.
struct Src<'a> {
    data: &'a [u8],
    fail_after: Option<usize>,
}

unsafe extern "C" fn src_read(
    userdata: *mut std::ffi::c_void,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> std::ffi::c_int {
    // SAFETY: the callback contract: userdata is our Src, buf has len bytes, out_n one.
    unsafe {
        let src = &mut *(userdata as *mut Src);
        if let Some(k) = src.fail_after {
            if src.data.len() <= k {
                return 5; // EIO
            }
        }
        let n = src.data.len().min(len).min(10_000);
        std::ptr::copy_nonoverlapping(src.data.as_ptr(), buf, n);
        src.data = &src.data[n..];
        *out_n = n;
    }
    0
}

unsafe extern "C" fn sink_write(
    userdata: *mut std::ffi::c_void,
    buf: *const u8,
    len: usize,
    out_n: *mut usize,
) -> std::ffi::c_int {
    // SAFETY: the callback contract: userdata is our Vec, buf has len bytes, out_n one.
    unsafe {
        let v = &mut *(userdata as *mut Vec<u8>);
        let n = len.min(3000);
        v.extend_from_slice(std::slice::from_raw_parts(buf, n));
        *out_n = n;
    }
    0
}

#[test]
fn streams_and_files_through_the_c_api() {
    let alice = Party::new("alice", LS_KEY_EC_P256);
    let bob = Party::new("bob", LS_KEY_EC_P256);
    let doc: Vec<u8> = (0..300_000u32)
        .flat_map(|i| format!("{i};{}\n", i * 7 % 1000).into_bytes())
        .collect();
    let recipients = [bob.cert as *const ls_cert];
    let mut sealed = Vec::new();
    let mut src = Src {
        data: &doc,
        fail_after: None,
    };
    let mut size = 1u64;
    unsafe {
        let rc = ls_seal_stream(
            alice.id,
            recipients.as_ptr(),
            1,
            Some(src_read),
            &mut src as *mut Src as *mut _,
            Some(sink_write),
            &mut sealed as *mut Vec<u8> as *mut _,
            null(),
            &mut size,
        );
        assert_eq!(rc, 0, "{}", msg());
    }
    assert_eq!(size, sealed.len() as u64);
    let opts = open_opts(&alice);
    // Through the callbacks.
    let mut out = Vec::new();
    let mut src = Src {
        data: &sealed,
        fail_after: None,
    };
    let mut opened = 1 as *mut ls_opened;
    unsafe {
        let rc = ls_open_stream(
            bob.id,
            Some(src_read),
            &mut src as *mut Src as *mut _,
            Some(sink_write),
            &mut out as *mut Vec<u8> as *mut _,
            &opts,
            &mut opened,
        );
        assert_eq!(rc, 0, "{}", msg());
        assert!(out == doc);
        assert_eq!(ls_opened_size(opened), doc.len() as u64);
        assert_eq!(s(ls_cert_subject(ls_opened_signer(opened))), "CN=alice");
        ls_opened_free(opened);
    }
    // A read callback that fails: LS_ERR_IO, *out NULL.
    let mut src = Src {
        data: &sealed,
        fail_after: Some(sealed.len() / 2),
    };
    let mut out = Vec::new();
    let mut opened = 1 as *mut ls_opened;
    unsafe {
        let rc = ls_open_stream(
            bob.id,
            Some(src_read),
            &mut src as *mut Src as *mut _,
            Some(sink_write),
            &mut out as *mut Vec<u8> as *mut _,
            &opts,
            &mut opened,
        );
        assert_eq!(rc, 102, "{}", msg()); // LS_ERR_IO
        assert!(opened.is_null());
        // No callback: named.
        let rc = ls_open_stream(
            bob.id,
            None,
            null_mut(),
            Some(sink_write),
            null_mut(),
            &opts,
            &mut opened,
        );
        assert_eq!(rc, NULL_ARGUMENT);
        assert!(msg().contains("read_cb"), "{}", msg());
    }
    // Files.
    let dir = std::env::temp_dir().join(format!("ls-ffi-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = |n: &str| CString::new(dir.join(n).to_str().unwrap()).unwrap();
    std::fs::write(dir.join("doc.csv"), &doc).unwrap();
    unsafe {
        let rc = ls_seal_file(
            alice.id,
            recipients.as_ptr(),
            1,
            p("doc.csv").as_ptr(),
            p("doc.p7m").as_ptr(),
            null(),
        );
        assert_eq!(rc, 0, "{}", msg());
        let mut opened = null_mut();
        let rc = ls_open_file(
            bob.id,
            p("doc.p7m").as_ptr(),
            p("out.csv").as_ptr(),
            &opts,
            &mut opened,
        );
        assert_eq!(rc, 0, "{}", msg());
        ls_opened_free(opened);
    }
    assert!(std::fs::read(dir.join("out.csv")).unwrap() == doc);
    // A truncated file: refused, no output file.
    let sealed_file = std::fs::read(dir.join("doc.p7m")).unwrap();
    std::fs::write(dir.join("cut.p7m"), &sealed_file[..sealed_file.len() - 10]).unwrap();
    unsafe {
        let mut opened = 1 as *mut ls_opened;
        let rc = ls_open_file(
            bob.id,
            p("cut.p7m").as_ptr(),
            p("cut.csv").as_ptr(),
            &opts,
            &mut opened,
        );
        assert_ne!(rc, 0);
        assert!(opened.is_null());
    }
    assert!(!dir.join("cut.csv").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
