//! The client through the C ABI: examples-c/send_poll run (under valgrind) against a real
//! `layersec-server`, the poll callback driven from Rust against one, a send queued for retry
//! when the service is down, and the argument checks of the `ls_client_*` exports.

// Out-parameters start as garbage pointers such as `1 as *mut T` on purpose: the library must
// overwrite them without reading them.
#![allow(clippy::manual_dangling_ptr)]

mod common;

use ::ls_client::{Config, TemplateOptions};
use common::*;
use layersec::*;
use ls_core::{Identity, KeyType};
use ls_tests::service::{server_bin_beside, RunningService};
use std::ffi::{c_char, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::ptr::{null, null_mut};

const NULL_ARGUMENT: ls_result = 100;
const INVALID_ARGUMENT: ls_result = 101;
const CERT_NOT_FOUND: ls_result = 307;
const CONNECT_FAILED: ls_result = 600;
const CONFIG_INVALID: ls_result = 701;

/// As in c_examples.rs: no memory errors, no definite leaks.
const VALGRIND: &[&str] = &[
    "valgrind",
    "-q",
    "--error-exitcode=99",
    "--leak-check=full",
    "--errors-for-leak-kinds=definite",
    // A false positive of OpenSSL's AVX AES-GCM when the tag comes after the ciphertext (as
    // the streaming open gives it): examples-c/valgrind.supp says why it is believed to be one.
    concat!(
        "--suppressions=",
        env!("CARGO_MANIFEST_DIR"),
        "/../examples-c/valgrind.supp"
    ),
];

fn msg() -> String {
    unsafe { CStr::from_ptr(ls_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn path_cstr(p: &Path) -> CString {
    cstr(p.to_str().expect("test paths are UTF-8"))
}

/// A running `layersec-server` (the shared harness) in a folder of its own, from the target
/// folder of this test (built if it is not there yet); stopped (and the folder removed) on drop.
fn start_service(name: &str) -> RunningService {
    let mut s = RunningService::init(&server_bin_beside(&profile_dir()), name, |c| c);
    s.serve();
    s
}

/// Clients of the service's parties.
trait Parties {
    fn party(&self, id: &str) -> Party;
}

impl Parties for RunningService {
    /// A party with a client configuration, registered at the service with its certificate.
    fn party(&self, id: &str) -> Party {
        let p = Party::new(
            &self.dir,
            id,
            &self.url,
            &self.service_cert_path(),
            Some(&self.tls_cert_path()),
        );
        let sub = self.admin(&["subscriber", "add", "--organisation", id]);
        let sub = sub["id"].as_i64().expect("subscriber add answers its id");
        self.admin(&[
            "party",
            "add",
            "--subscriber",
            &sub.to_string(),
            "--party",
            id,
            "--certificate",
            p.cert.to_str().unwrap(),
        ]);
        p
    }
}

/// A client's folder: `layersec.toml` from the library's template, a generated EC identity.
struct Party {
    id: String,
    dir: PathBuf,
    config: PathBuf,
    cert: PathBuf,
}

impl Party {
    fn new(root: &Path, id: &str, url: &str, service_cert: &Path, ca: Option<&Path>) -> Party {
        let dir = root.join(format!("client-{id}"));
        std::fs::create_dir_all(dir.join("identity")).unwrap();
        let g = Identity::generate(id, KeyType::EcP256, 30, None).unwrap();
        let t = TemplateOptions {
            service_certificate: service_cert.to_str().unwrap().into(),
            ca_file: ca.map(|p| p.to_str().unwrap().into()),
            ..TemplateOptions::new(id, url)
        };
        std::fs::write(dir.join(&t.key), &g.key_pem).unwrap();
        let cert = dir.join(&t.certificate);
        std::fs::write(&cert, &g.cert_pem).unwrap();
        let config = dir.join("layersec.toml");
        write(&config, &Config::template(&t));
        Party {
            id: id.into(),
            dir,
            config,
            cert,
        }
    }

    /// Puts `other`'s certificate in our partners folder, named after its party id.
    fn trust(&self, other: &Party) {
        let cfg = Config::load(&self.config).unwrap();
        std::fs::create_dir_all(&cfg.partners.dir).unwrap();
        std::fs::copy(
            &other.cert,
            cfg.partners.dir.join(format!("{}.crt", other.id)),
        )
        .unwrap();
    }

    fn client(&self) -> Client {
        let mut c = 1 as *mut ls_client; // garbage: must be reset
        let path = path_cstr(&self.config);
        let rc = unsafe { ls_client_new_from_config(path.as_ptr(), &mut c) };
        assert_eq!(rc, 0, "{}", msg());
        assert!(!c.is_null());
        Client(c)
    }
}

/// An `ls_client` freed on drop.
struct Client(*mut ls_client);

impl Drop for Client {
    fn drop(&mut self) {
        unsafe { ls_client_free(self.0) };
    }
}

impl Client {
    /// `ls_client_send`: (result, MessageId if one came back).
    fn send(
        &self,
        data: &[u8],
        name: &str,
        to: &str,
        opts: *const ls_send_options,
    ) -> (ls_result, Option<String>) {
        let (name, to) = (cstr(name), cstr(to));
        let mut id = ls_bytes {
            data: 1 as *mut u8,
            len: 3,
        }; // garbage: must be reset
        let rc = unsafe {
            ls_client_send(
                self.0,
                data.as_ptr(),
                data.len(),
                name.as_ptr(),
                to.as_ptr(),
                opts,
                &mut id,
            )
        };
        let out = (!id.data.is_null()).then(|| {
            let v = unsafe { std::slice::from_raw_parts(id.data, id.len) }.to_vec();
            // The text is NUL-terminated too.
            assert_eq!(unsafe { *id.data.add(id.len) }, 0);
            String::from_utf8(v).unwrap()
        });
        if out.is_none() {
            assert_eq!(id.len, 0);
        }
        unsafe { ls_bytes_free(&mut id) };
        (rc, out)
    }
}

/// A copy of what the callback saw.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    name: String,
    sender: String,
    message_id: String,
    conversation_id: String,
    size: u64,
    signing_time: i64,
    received_at: i64,
}

struct Collector {
    seen: Vec<Seen>,
    /// What the callback returns.
    answer: i32,
}

unsafe extern "C" fn collect(userdata: *mut c_void, doc: *const ls_received) -> i32 {
    let c = unsafe { &mut *userdata.cast::<Collector>() };
    let d = unsafe { &*doc };
    let s = |p: *const c_char| unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string();
    c.seen.push(Seen {
        path: s(d.path),
        name: s(d.name),
        sender: s(d.sender),
        message_id: s(d.message_id),
        conversation_id: s(d.conversation_id),
        size: d.size,
        signing_time: d.signing_time,
        received_at: d.received_at,
    });
    c.answer
}

fn poll(c: &Client, collector: &mut Collector) -> (ls_result, usize) {
    let mut count = 77usize; // garbage: must be reset
    let rc = unsafe {
        ls_client_poll(
            c.0,
            Some(collect),
            (collector as *mut Collector).cast(),
            &mut count,
        )
    };
    (rc, count)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// examples-c/send_poll built by its Makefile into `build`.
fn build_send_poll(build: &Path) -> PathBuf {
    assert!(have("make"), "make is needed to build the C examples");
    let lib = cdylib();
    let exe = build.join("send_poll");
    let out = run(Command::new("make")
        .arg("-C")
        .arg(workspace_dir().join("examples-c"))
        .arg(format!("LIBDIR={}", lib.parent().unwrap().display()))
        .arg(format!("BUILD={}", build.display()))
        .arg(&exe));
    assert!(out.status.success(), "building send_poll:\n{}", text(&out));
    exe
}

#[test]
fn send_poll_example_against_a_real_service() {
    let svc = start_service("send-poll");
    let alice = svc.party("alice");
    let bob = svc.party("bob");
    alice.trust(&bob);
    bob.trust(&alice);
    let exe = build_send_poll(&svc.dir.join("build"));

    let mut runners: Vec<&[&str]> = vec![&[]];
    if have("valgrind") {
        runners.push(VALGRIND);
    } else {
        ls_tests::skip("the valgrind run of send_poll: valgrind is not installed");
    }
    for (i, runner) in runners.into_iter().enumerate() {
        let doc = svc.dir.join(format!("invoice-{i}.xml"));
        let content = format!(
            "<?xml version=\"1.0\"?>\n<Invoice id=\"{i}\">{}</Invoice>\n",
            "x".repeat(3000 + i)
        );
        write(&doc, &content);
        let mut cmd = Command::new(runner.first().copied().unwrap_or(exe.to_str().unwrap()));
        if !runner.is_empty() {
            cmd.args(&runner[1..]).arg(&exe);
        }
        let out = run(cmd
            .arg(&alice.config)
            .arg(&bob.config)
            .arg(&doc)
            .arg(&bob.id));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && stdout.contains("send_poll: OK"),
            "send_poll {runner:?} failed (exit 99 is valgrind's: a memory error or a definite \
             leak):\n{}",
            text(&out)
        );
        let id = stdout
            .lines()
            .find_map(|l| l.strip_prefix("sent: MessageId "))
            .expect("send_poll prints the MessageId");
        assert!(
            stdout.contains(&format!("  message id: {id}\n")),
            "{stdout}"
        );
        assert!(stdout.contains("  sender: alice\n"), "{stdout}");
        assert!(stdout.contains("receipt: processed\n"), "{stdout}");
        assert!(alice
            .dir
            .join("sent")
            .join(format!("invoice-{i}.xml.receipt.p7m"))
            .is_file());
        assert!(
            stdout.contains(&format!("  size: {} bytes\n", content.len())),
            "{stdout}"
        );
        let received = stdout
            .lines()
            .find_map(|l| l.strip_prefix("received: "))
            .expect("send_poll prints the received path");
        let received = PathBuf::from(received);
        assert!(received.starts_with(bob.dir.join("inbox")), "{stdout}");
        assert_eq!(
            received.file_name().unwrap().to_str().unwrap(),
            format!("invoice-{i}.xml")
        );
        assert_eq!(std::fs::read_to_string(&received).unwrap(), content);
        assert!(Path::new(&format!("{}.meta.json", received.display())).is_file());
        // Alice keeps her copy in sent/.
        assert!(alice
            .dir
            .join("sent")
            .join(format!("invoice-{i}.xml"))
            .is_file());
    }
}

#[test]
fn poll_callback_sees_each_document_and_can_stop() {
    let svc = start_service("poll-cb");
    let carol = svc.party("carol");
    let dave = svc.party("dave");
    carol.trust(&dave);
    dave.trust(&carol);
    let c = carol.client();
    let d = dave.client();

    let conv = cstr("conv-42");
    let mut opts: ls_send_options = unsafe { std::mem::zeroed() };
    unsafe { ls_send_options_init(&mut opts) };
    assert_eq!(
        opts.struct_size as usize,
        std::mem::size_of::<ls_send_options>()
    );
    assert!(opts.service.is_null() && opts.action.is_null() && opts.conversation.is_null());
    opts.conversation = conv.as_ptr();
    let (rc, id1) = c.send(b"first", "one.txt", "dave", &opts);
    assert_eq!(rc, 0, "{}", msg());
    let (rc, id2) = c.send(b"", "two.txt", "dave", null());
    assert_eq!(rc, 0, "{}", msg());
    let (id1, id2) = (id1.unwrap(), id2.unwrap());
    assert_ne!(id1, id2);

    // The callback asks to stop after the first document: one per poll.
    let mut col = Collector {
        seen: Vec::new(),
        answer: 1,
    };
    for expected in 1..=2 {
        let (rc, n) = poll(&d, &mut col);
        assert_eq!((rc, n), (0, 1), "{}", msg());
        assert_eq!(col.seen.len(), expected);
    }
    let (rc, n) = poll(&d, &mut col);
    assert_eq!((rc, n), (0, 0), "{}", msg());
    assert_eq!(col.seen.len(), 2);

    let first = col
        .seen
        .iter()
        .find(|s| s.message_id == id1)
        .unwrap()
        .clone();
    let second = col
        .seen
        .iter()
        .find(|s| s.message_id == id2)
        .unwrap()
        .clone();
    assert_eq!((first.name.as_str(), first.size), ("one.txt", 5));
    assert_eq!((second.name.as_str(), second.size), ("two.txt", 0));
    assert_eq!(first.conversation_id, "conv-42");
    assert_eq!(
        second.conversation_id, id2,
        "a new conversation is named by the MessageId"
    );
    for s in [&first, &second] {
        assert_eq!(s.sender, "carol");
        assert!((now() - s.received_at).abs() < 300, "{s:?}");
        assert!((now() - s.signing_time).abs() < 300, "{s:?}");
        assert!(s.path.ends_with(&s.name), "{s:?}");
    }
    assert_eq!(std::fs::read(&first.path).unwrap(), b"first");

    // A NULL callback only counts; the message id of a document dave sends back arrives.
    let (rc, back) = d.send(b"reply", "reply.txt", "carol", null());
    assert_eq!(rc, 0, "{}", msg());
    let mut count = 9usize;
    let rc = unsafe { ls_client_poll(c.0, None, null_mut(), &mut count) };
    assert_eq!((rc, count), (0, 1), "{}", msg());
    assert!(back.is_some());
}

#[test]
fn a_send_to_a_service_that_is_down_is_queued_with_its_message_id() {
    let root = tempdir("client-down");
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let service = Identity::generate("service", KeyType::EcP256, 30, None).unwrap();
    let service_cert = root.join("service.crt");
    std::fs::write(&service_cert, &service.cert_pem).unwrap();
    let url = format!("https://127.0.0.1:{port}/as4");
    let erin = Party::new(&root, "erin", &url, &service_cert, None);
    let frank = Party::new(&root, "frank", &url, &service_cert, None);
    erin.trust(&frank);
    let c = erin.client();

    let (rc, id) = c.send(b"doc", "doc.txt", "frank", null());
    assert_eq!(rc, CONNECT_FAILED, "{}", msg());
    let id = id.expect("a queued send still gives its MessageId");
    assert!(!id.is_empty());
    let m = msg();
    assert!(m.contains("queued for retry") && m.contains(&id), "{m}");
    // Worth trying again: said by a flag, not only in the text.
    assert_eq!(ls_last_error_is_transient(), 1);
    // The job waits in the journal.
    let jobs: Vec<_> = std::fs::read_dir(erin.dir.join("state/outgoing"))
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert_eq!(jobs.len(), 1);

    // Running the due jobs while the service is still down: LS_OK, nothing delivered, the job
    // stays (its back-off has not passed either).
    let mut sent = 99usize;
    let rc = unsafe { ls_client_run_due_jobs(c.0, &mut sent) };
    assert_eq!((rc, sent), (0, 0), "{}", msg());
    assert_eq!(
        unsafe { ls_client_run_due_jobs(c.0, std::ptr::null_mut()) },
        0
    );
    assert_eq!(
        unsafe { ls_client_run_due_jobs(std::ptr::null_mut(), &mut sent) },
        100
    );
    assert_eq!(
        std::fs::read_dir(erin.dir.join("state/outgoing"))
            .unwrap()
            .count(),
        1
    );

    // Nothing is queued for a partner without a certificate: no MessageId.
    let (rc, id) = c.send(b"doc", "doc.txt", "nobody", null());
    assert_eq!(rc, CERT_NOT_FOUND, "{}", msg());
    assert!(id.is_none());
    assert_eq!(
        ls_last_error_is_transient(),
        0,
        "a refusal is not transient"
    );

    // send_file: a missing file is LS_ERR_IO, nothing queued.
    let missing = path_cstr(&root.join("missing.txt"));
    let to = cstr("frank");
    let mut out = ls_bytes {
        data: 1 as *mut u8,
        len: 1,
    };
    let rc = unsafe { ls_client_send_file(c.0, missing.as_ptr(), to.as_ptr(), null(), &mut out) };
    assert_eq!(rc, 102, "{}", msg());
    assert!(out.data.is_null() && out.len == 0);

    // Polling a service that is down fails; nothing was written.
    let mut col = Collector {
        seen: Vec::new(),
        answer: 0,
    };
    let (rc, n) = poll(&c, &mut col);
    assert_eq!((rc, n), (CONNECT_FAILED, 0), "{}", msg());
    assert_eq!(ls_last_error_is_transient(), 1);
    assert!(col.seen.is_empty());
    // A call that succeeds clears it (as it clears the message).
    let rc = unsafe { ls_client_run_due_jobs(c.0, &mut sent) };
    assert_eq!(rc, 0, "{}", msg());
    assert_eq!(ls_last_error_is_transient(), 0);
    drop(c);
}

#[test]
fn client_arguments_are_checked() {
    let root = tempdir("client-args");
    // A missing configuration file.
    let missing = path_cstr(&root.join("missing.toml"));
    let mut c = 1 as *mut ls_client;
    let rc = unsafe { ls_client_new_from_config(missing.as_ptr(), &mut c) };
    assert_eq!(rc, CONFIG_INVALID, "{}", msg());
    assert!(c.is_null());
    assert!(msg().contains("missing.toml"), "{}", msg());
    // NULL arguments, named.
    let mut c = 1 as *mut ls_client;
    let rc = unsafe { ls_client_new_from_config(null(), &mut c) };
    assert_eq!(rc, NULL_ARGUMENT);
    assert!(c.is_null());
    assert!(msg().contains("config_path"), "{}", msg());
    let rc = unsafe { ls_client_new_from_config(missing.as_ptr(), null_mut()) };
    assert_eq!(rc, NULL_ARGUMENT);
    assert!(msg().contains("out"), "{}", msg());

    let to = cstr("bob");
    let name = cstr("a.txt");
    let mut id = ls_bytes {
        data: 1 as *mut u8,
        len: 5,
    };
    let rc = unsafe {
        ls_client_send(
            null_mut(),
            b"x".as_ptr(),
            1,
            name.as_ptr(),
            to.as_ptr(),
            null(),
            &mut id,
        )
    };
    assert_eq!(rc, NULL_ARGUMENT);
    assert!(id.data.is_null() && id.len == 0);
    assert!(msg().contains("c is NULL"), "{}", msg());
    let rc =
        unsafe { ls_client_send_file(null_mut(), name.as_ptr(), to.as_ptr(), null(), null_mut()) };
    assert_eq!(rc, NULL_ARGUMENT);
    assert!(msg().contains("message_id_out"), "{}", msg());
    let mut count = 5usize;
    let rc = unsafe { ls_client_poll(null_mut(), Some(collect), null_mut(), &mut count) };
    assert_eq!((rc, count), (NULL_ARGUMENT, 0));
    let rc = unsafe { ls_client_poll(null_mut(), None, null_mut(), null_mut()) };
    assert_eq!(rc, NULL_ARGUMENT);
    assert!(msg().contains("count_out"), "{}", msg());
    unsafe {
        ls_client_free(null_mut());
        ls_send_options_init(null_mut());
    }

    // With a client (no service needed before a send gets that far).
    let service = Identity::generate("service", KeyType::EcP256, 30, None).unwrap();
    let service_cert = root.join("service.crt");
    std::fs::write(&service_cert, &service.cert_pem).unwrap();
    let gina = Party::new(
        &root,
        "gina",
        "https://127.0.0.1:9/as4",
        &service_cert,
        None,
    );
    let hal = Party::new(&root, "hal", "https://127.0.0.1:9/as4", &service_cert, None);
    gina.trust(&hal);
    let c = gina.client();
    // Options: a zero struct_size (not initialised) and unknown flags are refused.
    let mut opts: ls_send_options = unsafe { std::mem::zeroed() };
    let (rc, id) = c.send(b"x", "a.txt", "hal", &opts);
    assert_eq!(rc, INVALID_ARGUMENT, "{}", msg());
    assert!(msg().contains("struct_size"), "{}", msg());
    assert!(id.is_none());
    unsafe { ls_send_options_init(&mut opts) };
    opts.flags = 1 << 7;
    let (rc, id) = c.send(b"x", "a.txt", "hal", &opts);
    assert_eq!(rc, INVALID_ARGUMENT, "{}", msg());
    assert!(msg().contains("flags"), "{}", msg());
    assert!(id.is_none());
    // No base name: refused, nothing queued.
    let (rc, id) = c.send(b"x", "dir/", "hal", null());
    assert_eq!(rc, INVALID_ARGUMENT, "{}", msg());
    assert!(id.is_none());
    // Invalid UTF-8 is refused by name.
    let bad = [0xffu8, 0];
    let rc = unsafe {
        ls_client_send(
            c.0,
            null(),
            0,
            bad.as_ptr().cast(),
            to.as_ptr(),
            null(),
            &mut id_out(),
        )
    };
    assert_eq!(rc, INVALID_ARGUMENT);
    assert!(msg().contains("name"), "{}", msg());
    // NULL data with a length.
    let rc = unsafe {
        ls_client_send(
            c.0,
            null(),
            3,
            name.as_ptr(),
            to.as_ptr(),
            null(),
            &mut id_out(),
        )
    };
    assert_eq!(rc, NULL_ARGUMENT);
    assert!(msg().contains("data"), "{}", msg());
    drop(c);
}

fn id_out() -> ls_bytes {
    ls_bytes {
        data: null_mut(),
        len: 0,
    }
}
