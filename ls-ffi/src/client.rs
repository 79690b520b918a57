//! `ls_client`: the client of a Layer Security Messaging Service — send documents to partners
//! and fetch what partners sent us, as a `layersec` configuration file describes it.

use crate::bytes::ls_bytes;
use crate::ptr;
use crate::result::{call, call_failure, cstring_lossy, guard, ls_result, Failure};
use ::ls_client::{Client, Config, Received, SendOptions, Sent};
use ls_core::{Error, ErrorCode};
use std::ffi::{c_char, c_void, CString};
use std::mem::{offset_of, size_of};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// The client of one configuration file (the file `layersec init` writes): our party id and
/// identity, our partners' certificates (`<partners dir>/<party id>.crt`), the Messaging
/// Service, and the folders (`sent/`, `failed/`, `inbox/`, and `state/`, the journal that makes
/// sends and deliveries survive crashes).
///
/// Use a client from one thread at a time: no function taking it may run while another thread
/// uses the same client (it may be handed to another thread between calls). Different clients
/// are independent, even of the same configuration: they coordinate through the state folder,
/// as `layersec` processes do.
pub struct ls_client {
    client: Client,
}

/// Reads the configuration file `config_path` (as `layersec init` writes it; relative paths in
/// it are relative to its folder), loads our identity, the partners' and the service's
/// certificates, and creates the folders that are missing. Nothing is sent yet.
///
/// `*out` is set to NULL first, then to a new client the caller frees with `ls_client_free`.
/// Errors: `LS_ERR_CONFIG_INVALID` (the file is missing or unreadable, or a setting is bad; the
/// message says `<file>: <key>: <what is expected>`), `LS_ERR_IO` (a folder cannot be
/// created), `LS_ERR_BAD_PASSWORD`, `LS_ERR_KEY_CERT_MISMATCH`, `LS_ERR_CERT_INVALID`.
#[no_mangle]
pub unsafe extern "C" fn ls_client_new_from_config(
    config_path: *const c_char,
    out: *mut *mut ls_client,
) -> ls_result {
    call("ls_client_new_from_config", || {
        let out = ptr::out_arg(out, std::ptr::null_mut(), "out")?;
        let path = ptr::arg_str(config_path, "config_path")?;
        let cfg = Config::load(path)?;
        let client = Client::from_config(&cfg)?;
        *out = ptr::into_handle(ls_client { client });
        Ok(())
    })
}

/// Options of `ls_client_send` and `ls_client_send_file`: the ebMS header of one send.
/// Initialise with `ls_send_options_init` (or set every byte to zero and `struct_size` to
/// `sizeof(ls_send_options)`), then set what you need: a NULL field means its default. Fields may
/// be appended in later versions; `struct_size` tells the library which ones the caller knows.
/// The strings are borrowed for the call only.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug)]
pub struct ls_send_options {
    /// `sizeof(ls_send_options)` as the caller was compiled.
    pub struct_size: u32,
    /// `LS_SEND_NO_RECEIPT`, or 0 (other bits are an error).
    pub flags: u32,
    /// The ebMS Service (nullable: the configuration's `[defaults] service`).
    pub service: *const c_char,
    /// The ebMS Action (nullable: the configuration's `[defaults] action`).
    pub action: *const c_char,
    /// The ConversationId (nullable: a new conversation, whose id is the MessageId).
    pub conversation: *const c_char,
}

/// Do not ask the partner for a signed receipt of this document (the configuration's
/// `[receipts] request` asks by default).
pub const LS_SEND_NO_RECEIPT: u32 = 1 << 0;

impl ls_send_options {
    const DEFAULT: ls_send_options = ls_send_options {
        struct_size: size_of::<ls_send_options>() as u32,
        flags: 0,
        service: std::ptr::null(),
        action: std::ptr::null(),
        conversation: std::ptr::null(),
    };

    /// The caller's options (NULL: defaults), read as far as its `struct_size` reaches.
    fn read(p: *const ls_send_options) -> Result<SendOptions, Error> {
        let mut o = Self::DEFAULT;
        if !p.is_null() {
            let size = ptr::versioned_size(p, size_of::<ls_send_options>(), "opts")?;
            macro_rules! read_fields {
                ($($f:ident),*) => {$(
                    if let Some(v) =
                        ptr::versioned_field(p, size, offset_of!(ls_send_options, $f))
                    {
                        o.$f = v;
                    }
                )*};
            }
            read_fields!(flags, service, action, conversation);
        }
        if o.flags & !LS_SEND_NO_RECEIPT != 0 {
            return Err(Error::InvalidArgument(format!(
                "opts->flags has unknown bits 0x{:x}",
                o.flags & !LS_SEND_NO_RECEIPT
            )));
        }
        let text =
            |p: *const c_char, name: &str| ptr::opt_str(p, name).map(|s| s.map(str::to_string));
        Ok(SendOptions {
            service: text(o.service, "opts->service")?,
            action: text(o.action, "opts->action")?,
            conversation: text(o.conversation, "opts->conversation")?,
            no_receipt: o.flags & LS_SEND_NO_RECEIPT != 0,
        })
    }
}

/// Sets `*opts` to the defaults (every field NULL: the configuration's `[defaults]` and a new
/// conversation) with `struct_size = sizeof(ls_send_options)`. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn ls_send_options_init(opts: *mut ls_send_options) {
    guard("ls_send_options_init", (), || {
        let _ = ptr::out_arg(opts, ls_send_options::DEFAULT, "opts");
    })
}

/// The result of a send: its MessageId out, and `LS_OK` only once delivered.
fn sent(sent: Sent, message_id_out: &mut ls_bytes) -> Result<(), Failure> {
    *message_id_out = ls_bytes::from_vec(sent.message_id.clone().into_bytes());
    if sent.is_delivered() {
        return Ok(());
    }
    // Queued for retry: report the failure of the attempt, with the MessageId to track.
    let code = sent
        .last_error
        .as_ref()
        .map_or(ErrorCode::ConnectFailed, |p| p.code);
    let why = sent
        .last_error
        .as_ref()
        .map_or("the service could not be reached", |p| p.message.as_str());
    let next = sent
        .next_attempt
        .map(|t| format!(", next attempt at {}", ls_core::time::iso8601(t)))
        .unwrap_or_default();
    Err(Failure::new(
        code,
        format!(
            "not delivered yet, queued for retry as MessageId {} (attempt {}{next}): {why}",
            sent.message_id, sent.attempts
        ),
        // Not over: the client retries it (never the caller, which would send it twice).
        true,
    ))
}

/// Sends a document now: seals `data` (`len` bytes; NULL with 0 for an empty document) under the
/// file name `name` (a base name, which the partner's inbox uses) for partner `to` (a party id
/// with a certificate in the partners folder), carries it in a signed AS4 message to the
/// service and checks the service's signed receipt. `opts` is nullable (defaults).
///
/// `message_id_out` is reset to `{NULL, 0}` first. Results:
/// - `LS_OK`: delivered, the receipt verified; `*message_id_out` holds the MessageId (text) and
///   the document's copy is in the `sent/` folder.
/// - Queued for retry: the service could not be reached (or answered in a way worth retrying);
///   the send is kept in the journal of the state folder and pushed again, with the same
///   MessageId, by the client daemon of the configuration (`layersec run`). The code is that
///   of the failed attempt (usually 6xx: `LS_ERR_CONNECT_FAILED`, `LS_ERR_TIMEOUT`,
///   `LS_ERR_HTTP_STATUS`…) and `*message_id_out` STILL holds the MessageId, so the caller
///   can track it.
/// - Any other failure: nothing was queued and `*message_id_out` stays `{NULL, 0}`:
///   `LS_ERR_CERT_NOT_FOUND` (no certificate for `to`), `LS_ERR_INVALID_ARGUMENT` (a bad name),
///   `LS_ERR_EBMS_ERROR` (the service refused the message: the document is in `failed/` with
///   the reason), `LS_ERR_IO`, `LS_ERR_STATE_CORRUPT`.
///
/// So after a failure, `message_id_out->data != NULL` means "queued, not lost": do not send the
/// document again (that would be a second message with a new MessageId); the client pushes the
/// queued one. `ls_last_error_is_transient()` is 1 for every queued send, whatever the code. Freeing
/// `*message_id_out` with `ls_bytes_free` is right in every case.
#[no_mangle]
pub unsafe extern "C" fn ls_client_send(
    c: *mut ls_client,
    data: *const u8,
    len: usize,
    name: *const c_char,
    to: *const c_char,
    opts: *const ls_send_options,
    message_id_out: *mut ls_bytes,
) -> ls_result {
    call_failure("ls_client_send", || {
        let out = ptr::out_arg(message_id_out, ls_bytes::EMPTY, "message_id_out")?;
        let c = ptr::arg_ref(c.cast_const(), "c")?;
        let data = ptr::arg_bytes(data, len, "data")?;
        let name = ptr::arg_str(name, "name")?;
        let to = ptr::arg_str(to, "to")?;
        let opts = ls_send_options::read(opts)?;
        sent(c.client.send_bytes(name, data, to, &opts)?, out)
    })
}

/// `ls_client_send` with the content and the base name of the file at `path` (the file stays
/// where it is). Results as for `ls_client_send`; `LS_ERR_IO` when the file cannot be read.
#[no_mangle]
pub unsafe extern "C" fn ls_client_send_file(
    c: *mut ls_client,
    path: *const c_char,
    to: *const c_char,
    opts: *const ls_send_options,
    message_id_out: *mut ls_bytes,
) -> ls_result {
    call_failure("ls_client_send_file", || {
        let out = ptr::out_arg(message_id_out, ls_bytes::EMPTY, "message_id_out")?;
        let c = ptr::arg_ref(c.cast_const(), "c")?;
        let path = ptr::arg_str(path, "path")?;
        let to = ptr::arg_str(to, "to")?;
        let opts = ls_send_options::read(opts)?;
        sent(c.client.send_file(Path::new(path), to, &opts)?, out)
    })
}

/// A document `ls_client_poll` wrote to the inbox, as its callback sees it. Every pointer is
/// borrowed (NUL-terminated UTF-8) and valid only during the callback: copy what you keep.
/// The library makes these, so later versions may append fields.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct ls_received {
    /// The document in the inbox folder (its metadata is `<path>.meta.json`).
    pub path: *const c_char,
    /// Its file name there: the sender's name made safe, with `-1`, `-2`… if it was taken.
    pub name: *const c_char,
    /// The sender's party id, verified: the message and the document are signed with the
    /// certificate of that partner.
    pub sender: *const c_char,
    pub message_id: *const c_char,
    pub conversation_id: *const c_char,
    /// The document's size in bytes.
    pub size: u64,
    /// The signing time the sender stated, in Unix seconds; 0 if it stated none.
    pub signing_time: i64,
    /// When the document was written to the inbox, in Unix seconds.
    pub received_at: i64,
}

/// Called by `ls_client_poll` once for each document written to the inbox, with the caller's
/// `userdata`. Return 0 to go on; any other value stops the poll after this document — it is
/// already written to the inbox, and its receipt is still posted before `ls_client_poll`
/// returns, so it is not offered again.
///
/// The callback must not free the client. It may send with it; a nested `ls_client_poll` of
/// the same client fails with `LS_ERR_STATE_LOCKED`.
#[allow(non_camel_case_types)]
pub type ls_received_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, doc: *const ls_received) -> i32>;

/// The C strings of a `Received`, alive while the callback runs.
struct ReceivedText {
    path: CString,
    name: CString,
    sender: CString,
    message_id: CString,
    conversation_id: CString,
}

impl ReceivedText {
    fn of(r: &Received) -> ReceivedText {
        ReceivedText {
            path: cstring_lossy(&r.path.to_string_lossy()),
            name: cstring_lossy(&r.name),
            sender: cstring_lossy(&r.sender),
            message_id: cstring_lossy(&r.message_id),
            conversation_id: cstring_lossy(&r.conversation_id),
        }
    }

    /// The struct for C, borrowing from `self`.
    fn view(&self, r: &Received) -> ls_received {
        ls_received {
            path: self.path.as_ptr(),
            name: self.name.as_ptr(),
            sender: self.sender.as_ptr(),
            message_id: self.message_id.as_ptr(),
            conversation_id: self.conversation_id.as_ptr(),
            size: r.size,
            signing_time: r.signing_time.unwrap_or(0),
            received_at: r.received_at,
        }
    }
}

/// Fetches every document waiting for us at the service: pulls until none is left, verifies
/// each message and its document against the certificate of the partner it comes from, writes
/// the document and its metadata to the inbox folder, calls `cb` (nullable: the documents are
/// only counted) with `userdata`, then posts the receipt. A kill at any point neither loses nor
/// duplicates a document (see the journal in the state folder).
///
/// A message that cannot be accepted (unknown sender, bad signature, cannot be opened) is
/// neither written nor receipted — the service offers it again later — and is recorded in the
/// state folder (`layersec status` lists it); the poll goes on with the next one.
///
/// `*count_out` is set to 0 first, then to the number of documents written to the inbox (and
/// passed to `cb`) — also when the poll fails part way. Errors: transport failures (6xx: the
/// service cannot be reached or answers wrongly), `LS_ERR_STATE_LOCKED` (another client polls
/// with the same state folder), `LS_ERR_IO`, `LS_ERR_STATE_CORRUPT`.
#[no_mangle]
pub unsafe extern "C" fn ls_client_poll(
    c: *mut ls_client,
    cb: ls_received_cb,
    userdata: *mut c_void,
    count_out: *mut usize,
) -> ls_result {
    call("ls_client_poll", || {
        let count = ptr::out_arg(count_out, 0, "count_out")?;
        let c = ptr::arg_ref(c.cast_const(), "c")?;
        let stop = AtomicBool::new(false);
        let mut n = 0usize;
        let result = c.client.poll_until(
            |r| {
                n += 1;
                if let Some(cb) = cb {
                    let text = ReceivedText::of(r);
                    let doc = text.view(r);
                    if ptr::call_back(cb, userdata, &doc) != 0 {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            },
            &stop,
        );
        *count = n;
        result.map(drop)
    })
}

/// Sends what is due: documents queued for retry (whose back-off has passed) and files in the
/// outbox folder of the configuration. `*sent_out` (nullable) receives how many were delivered
/// (receipt verified). A service that cannot be reached is not an error here: the documents stay
/// queued (see `layersec status`); LS_OK means the journal was processed.
#[no_mangle]
pub unsafe extern "C" fn ls_client_run_due_jobs(
    c: *mut ls_client,
    sent_out: *mut usize,
) -> ls_result {
    call("ls_client_run_due_jobs", || {
        let c = ptr::arg_ref(c.cast_const(), "c")?;
        let sent = c.client.process_outbox()?.jobs.sent.len();
        if !sent_out.is_null() {
            *ptr::out_arg(sent_out, 0, "sent_out")? = sent;
        }
        Ok(())
    })
}

/// `ls_client_receipt_state`: no document sent with this MessageId is in the `sent/` folder
/// (not sent, not delivered yet, or taken away).
pub const LS_RECEIPT_UNKNOWN: i32 = 0;
/// No signed receipt was asked of the partner for this document.
pub const LS_RECEIPT_NOT_REQUESTED: i32 = 1;
/// Asked for, not come yet.
pub const LS_RECEIPT_WAITING: i32 = 2;
/// The partner's end system signed that it received, verified and stored the document: the
/// receipt is `sent/<name>.receipt.p7m`, beside our SignedData `sent/<name>.signed.p7m`.
pub const LS_RECEIPT_PROCESSED: i32 = 3;
/// The partner refused the document with a signed notice (its class is in the listing of
/// `ls_client_receipts`).
pub const LS_RECEIPT_FAILED: i32 = 4;

/// The state of the partner's signed receipt of the document sent as `message_id` (as
/// `ls_client_send` returned it): `*state_out` is set to one of the `LS_RECEIPT_*` values
/// (`LS_RECEIPT_UNKNOWN` first). Receipts arrive with `ls_client_poll` (and the daemon).
#[no_mangle]
pub unsafe extern "C" fn ls_client_receipt_state(
    c: *const ls_client,
    message_id: *const c_char,
    state_out: *mut i32,
) -> ls_result {
    call("ls_client_receipt_state", || {
        let out = ptr::out_arg(state_out, LS_RECEIPT_UNKNOWN, "state_out")?;
        let c = ptr::arg_ref(c, "c")?;
        let id = ptr::arg_str(message_id, "message_id")?;
        *out = match c.client.receipt_state(id)? {
            None => LS_RECEIPT_UNKNOWN,
            Some(r) => match r.state.as_str() {
                "waiting" => LS_RECEIPT_WAITING,
                "processed" => LS_RECEIPT_PROCESSED,
                "failed" => LS_RECEIPT_FAILED,
                _ => LS_RECEIPT_NOT_REQUESTED,
            },
        };
        Ok(())
    })
}

/// The documents in the `sent/` folder with the state of their partner's signed receipt, as
/// JSON text (`{"receipts": [...]}`, the same as `layersec receipts --json`: `document`, `to`,
/// `message_id`, `sent_at`, `state`, `class`, and `receipt` with what a receipt says). With
/// `waiting_only` non-zero, only the documents still waiting. `*json_out` is reset first; free
/// it with `ls_bytes_free`.
#[no_mangle]
pub unsafe extern "C" fn ls_client_receipts(
    c: *const ls_client,
    waiting_only: i32,
    json_out: *mut ls_bytes,
) -> ls_result {
    call("ls_client_receipts", || {
        let out = ptr::out_arg(json_out, ls_bytes::EMPTY, "json_out")?;
        let c = ptr::arg_ref(c, "c")?;
        let list = c.client.receipts(waiting_only != 0)?;
        let json = serde_json::to_vec(&serde_json::json!({ "receipts": list }))
            .map_err(|e| Error::Internal(format!("cannot write JSON: {e}")))?;
        *out = ls_bytes::from_vec(json);
        Ok(())
    })
}

/// Frees a client. NULL is a no-op. Sends queued for retry stay in the journal of the state
/// folder, where the client daemon of the same configuration (`layersec run`) takes them up.
#[no_mangle]
pub unsafe extern "C" fn ls_client_free(c: *mut ls_client) {
    guard("ls_client_free", (), || ptr::free_handle(c))
}
