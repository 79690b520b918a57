/*
 * layersec_jni.c: the JNI glue of the Java binding (liblayersec_jni.so), written in C over the
 * public C ABI of include/layersec.h only (docs/ARCHITECTURE.md says why). Each function of
 * layersec.Native is one C call here plus the conversions:
 *
 * - handles travel as jlong; the Java side guarantees they are live for the call;
 * - byte[] inputs are copied into native buffers (GetByteArrayRegion), so the library never
 *   holds a pointer into the Java heap and no GC is blocked while it works; a buffer that held
 *   a password is wiped before it is freed;
 * - strings come NUL-terminated UTF-8 from Java (layersec.Utf8), never as jstring (JNI's
 *   "modified UTF-8" differs for NUL and characters beyond the BMP), and go back as byte[];
 * - a failed ls_result throws the layersec.LayerSecException of its code, made by
 *   LayerSecException.fromNative(code, name, message) from ls_result_name() and the thread's
 *   ls_last_error_message() read right after the failed call;
 * - ls_bytes output is copied into a new byte[] and freed at once.
 *
 * Every path that could fail in the JVM (allocation) leaves a pending exception and returns;
 * nothing here aborts the process. Compiled with -Wall -Wextra -Werror against the header
 * javac -h generates, so a signature that drifts from Native.java does not compile.
 */

#define _DEFAULT_SOURCE /* explicit_bzero */
#include <jni.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "layersec.h"
#include "layersec_Native.h"

static jclass g_exception;      /* layersec.LayerSecException (global ref) */
static jmethodID g_from_native; /* its static fromNative(int, byte[], byte[]) */
static jmethodID g_queued;      /* its static queued(byte[], LayerSecException) */
static jmethodID g_sink_received; /* layersec.Client.Sink.received(byte[] x5, long x3) */
static JavaVM *g_vm;

JNIEXPORT jint JNICALL JNI_OnLoad(JavaVM *vm, void *reserved) {
    JNIEnv *env;
    (void)reserved;
    if ((*vm)->GetEnv(vm, (void **)&env, JNI_VERSION_1_8) != JNI_OK) {
        return JNI_ERR;
    }
    jclass c = (*env)->FindClass(env, "layersec/LayerSecException");
    if (c == NULL) {
        return JNI_ERR;
    }
    g_exception = (*env)->NewGlobalRef(env, c);
    (*env)->DeleteLocalRef(env, c);
    if (g_exception == NULL) {
        return JNI_ERR;
    }
    g_from_native = (*env)->GetStaticMethodID(env, g_exception, "fromNative",
                                              "(I[B[B)Llayersec/LayerSecException;");
    if (g_from_native == NULL) {
        return JNI_ERR;
    }
    g_queued = (*env)->GetStaticMethodID(env, g_exception, "queued",
                                         "([BLlayersec/LayerSecException;)Llayersec/LayerSecException;");
    if (g_queued == NULL) {
        return JNI_ERR;
    }
    jclass sink = (*env)->FindClass(env, "layersec/Client$Sink");
    if (sink == NULL) {
        return JNI_ERR;
    }
    g_sink_received = (*env)->GetMethodID(env, sink, "received", "([B[B[B[B[BJJJ)V");
    (*env)->DeleteLocalRef(env, sink);
    if (g_sink_received == NULL) {
        return JNI_ERR;
    }
    g_vm = vm;
    return JNI_VERSION_1_8;
}

JNIEXPORT void JNICALL JNI_OnUnload(JavaVM *vm, void *reserved) {
    JNIEnv *env;
    (void)reserved;
    if ((*vm)->GetEnv(vm, (void **)&env, JNI_VERSION_1_8) == JNI_OK && g_exception != NULL) {
        (*env)->DeleteGlobalRef(env, g_exception);
        g_exception = NULL;
    }
}

/* ---- conversions -------------------------------------------------------------------------- */

static void throw_class(JNIEnv *env, const char *cls, const char *msg) {
    jclass c = (*env)->FindClass(env, cls);
    if (c != NULL) {
        (*env)->ThrowNew(env, c, msg);
        (*env)->DeleteLocalRef(env, c);
    }
}

/* A new byte[] with len bytes of data (NULL data with len 0 gives an empty array). NULL with an
 * exception pending when the JVM cannot allocate it. */
static jbyteArray new_bytes(JNIEnv *env, const uint8_t *data, size_t len) {
    if (len > (size_t)INT32_MAX) {
        throw_class(env, "java/lang/OutOfMemoryError",
                    "layersec: the result is larger than a Java array can hold");
        return NULL;
    }
    jbyteArray a = (*env)->NewByteArray(env, (jsize)len);
    if (a != NULL && len > 0) {
        (*env)->SetByteArrayRegion(env, a, 0, (jsize)len, (const jbyte *)data);
    }
    return a;
}

/* A C string as byte[] (without the NUL), or NULL for NULL. */
static jbyteArray cstr_bytes(JNIEnv *env, const char *s) {
    return s == NULL ? NULL : new_bytes(env, (const uint8_t *)s, strlen(s));
}

/* Throws the LayerSecException of a failed result. Reads the thread's message first. */
static void throw_result(JNIEnv *env, ls_result rc) {
    const char *msg = ls_last_error_message();
    const char *name = ls_result_name(rc);
    if ((*env)->ExceptionCheck(env)) {
        return;
    }
    jbyteArray jmsg = cstr_bytes(env, msg != NULL ? msg : "");
    if (jmsg == NULL) {
        return;
    }
    jbyteArray jname = cstr_bytes(env, name != NULL ? name : "LS_UNKNOWN");
    if (jname == NULL) {
        return;
    }
    jobject ex = (*env)->CallStaticObjectMethod(env, g_exception, g_from_native, (jint)rc, jname,
                                                jmsg);
    if (ex != NULL && !(*env)->ExceptionCheck(env)) {
        (*env)->Throw(env, (jthrowable)ex);
    }
}

/* A native copy of a byte[]: len bytes plus a NUL after them (so NUL-terminated strings from
 * Java, which carry their own NUL, and byte buffers are both served). */
typedef struct {
    uint8_t *data; /* NULL when the array was null */
    size_t len;
    int secret;    /* wiped before free */
} buf;

/* 0 on success; -1 with an exception pending. A null array gives {NULL, 0} unless required. */
static int buf_get(JNIEnv *env, jbyteArray a, buf *b, int required, const char *what) {
    b->data = NULL;
    b->len = 0;
    b->secret = 0;
    if (a == NULL) {
        if (required) {
            throw_class(env, "java/lang/NullPointerException", what);
            return -1;
        }
        return 0;
    }
    jsize n = (*env)->GetArrayLength(env, a);
    b->data = malloc((size_t)n + 1);
    if (b->data == NULL) {
        throw_class(env, "java/lang/OutOfMemoryError", "layersec: cannot copy an argument");
        return -1;
    }
    (*env)->GetByteArrayRegion(env, a, 0, n, (jbyte *)b->data);
    b->data[n] = 0;
    b->len = (size_t)n;
    return 0;
}

/* Like buf_get for a NUL-terminated string; the length excludes the NUL Java put there. */
static int str_get(JNIEnv *env, jbyteArray a, buf *b, int required, const char *what) {
    if (buf_get(env, a, b, required, what) != 0) {
        return -1;
    }
    if (b->data != NULL && (b->len == 0 || b->data[b->len - 1] != 0)) {
        free(b->data);
        b->data = NULL;
        throw_class(env, "java/lang/IllegalArgumentException",
                    "layersec: internal: a string argument is not NUL-terminated");
        return -1;
    }
    return 0;
}

static void buf_free(buf *b) {
    if (b->data != NULL) {
        if (b->secret) {
            explicit_bzero(b->data, b->len + 1);
        }
        free(b->data);
        b->data = NULL;
    }
}

#define PTR(type, h) ((type *)(intptr_t)(h))
#define HANDLE(p) ((jlong)(intptr_t)(p))

/* Takes an ls_bytes result: a byte[] of it (or NULL + exception), the ls_bytes freed. */
static jbyteArray take_bytes(JNIEnv *env, ls_result rc, ls_bytes *b) {
    jbyteArray a = NULL;
    if (rc != LS_OK) {
        throw_result(env, rc);
    } else {
        a = new_bytes(env, b->data, b->len);
    }
    ls_bytes_free(b);
    return a;
}

/* ---- version ------------------------------------------------------------------------------ */

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_version(JNIEnv *env, jclass cls) {
    (void)cls;
    return cstr_bytes(env, ls_version());
}

/* ---- identities --------------------------------------------------------------------------- */

JNIEXPORT jlong JNICALL Java_layersec_Native_identityLoad(JNIEnv *env, jclass cls,
                                                          jbyteArray key_path,
                                                          jbyteArray cert_path,
                                                          jbyteArray password) {
    (void)cls;
    buf k, c, p;
    ls_identity *out = NULL;
    if (str_get(env, key_path, &k, 1, "keyPath") != 0) {
        return 0;
    }
    if (str_get(env, cert_path, &c, 0, "certPath") != 0) {
        buf_free(&k);
        return 0;
    }
    if (str_get(env, password, &p, 0, "password") != 0) {
        buf_free(&k);
        buf_free(&c);
        return 0;
    }
    p.secret = 1;
    ls_result rc = ls_identity_load((const char *)k.data, (const char *)c.data,
                                    (const char *)p.data, &out);
    buf_free(&p);
    buf_free(&k);
    buf_free(&c);
    if (rc != LS_OK) {
        throw_result(env, rc);
        return 0;
    }
    return HANDLE(out);
}

JNIEXPORT jlong JNICALL Java_layersec_Native_identityFromMemory(JNIEnv *env, jclass cls,
                                                                jbyteArray key, jbyteArray cert,
                                                                jbyteArray password) {
    (void)cls;
    buf k, c, p;
    ls_identity *out = NULL;
    if (buf_get(env, key, &k, 1, "key") != 0) {
        return 0;
    }
    k.secret = 1; /* a private key */
    if (buf_get(env, cert, &c, 0, "cert") != 0) {
        buf_free(&k);
        return 0;
    }
    if (str_get(env, password, &p, 0, "password") != 0) {
        buf_free(&k);
        buf_free(&c);
        return 0;
    }
    p.secret = 1;
    ls_result rc = ls_identity_from_memory(k.data, k.len, c.data, c.len, (const char *)p.data,
                                           &out);
    buf_free(&p);
    buf_free(&k);
    buf_free(&c);
    if (rc != LS_OK) {
        throw_result(env, rc);
        return 0;
    }
    return HANDLE(out);
}

JNIEXPORT jlong JNICALL Java_layersec_Native_identityGenerate(JNIEnv *env, jclass cls,
                                                              jbyteArray party_id, jint key_type,
                                                              jint days, jbyteArray password) {
    (void)cls;
    buf id, p;
    ls_identity *out = NULL;
    if (days < 0) {
        throw_class(env, "java/lang/IllegalArgumentException", "days must not be negative");
        return 0;
    }
    if (str_get(env, party_id, &id, 1, "partyId") != 0) {
        return 0;
    }
    if (str_get(env, password, &p, 0, "password") != 0) {
        buf_free(&id);
        return 0;
    }
    p.secret = 1;
    ls_result rc = ls_identity_generate((const char *)id.data, (ls_key_type)key_type,
                                        (uint32_t)days, (const char *)p.data, &out);
    buf_free(&p);
    buf_free(&id);
    if (rc != LS_OK) {
        throw_result(env, rc);
        return 0;
    }
    return HANDLE(out);
}

JNIEXPORT jlong JNICALL Java_layersec_Native_identityCert(JNIEnv *env, jclass cls,
                                                          jlong identity) {
    (void)cls;
    ls_cert *out = NULL;
    ls_result rc = ls_identity_cert(PTR(const ls_identity, identity), &out);
    if (rc != LS_OK) {
        throw_result(env, rc);
        return 0;
    }
    return HANDLE(out);
}

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_identityKeyPem(JNIEnv *env, jclass cls,
                                                                 jlong identity) {
    (void)cls;
    ls_bytes b = {NULL, 0};
    return take_bytes(env, ls_identity_key_pem(PTR(const ls_identity, identity), &b), &b);
}

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_identityCsrPem(JNIEnv *env, jclass cls,
                                                                 jlong identity) {
    (void)cls;
    ls_bytes b = {NULL, 0};
    return take_bytes(env, ls_identity_csr_pem(PTR(const ls_identity, identity), &b), &b);
}

JNIEXPORT void JNICALL Java_layersec_Native_identityFree(JNIEnv *env, jclass cls,
                                                         jlong identity) {
    (void)env;
    (void)cls;
    ls_identity_free(PTR(ls_identity, identity));
}

/* ---- certificates ------------------------------------------------------------------------- */

JNIEXPORT jlong JNICALL Java_layersec_Native_certLoad(JNIEnv *env, jclass cls, jbyteArray path) {
    (void)cls;
    buf p;
    ls_cert *out = NULL;
    if (str_get(env, path, &p, 1, "path") != 0) {
        return 0;
    }
    ls_result rc = ls_cert_load((const char *)p.data, &out);
    buf_free(&p);
    if (rc != LS_OK) {
        throw_result(env, rc);
        return 0;
    }
    return HANDLE(out);
}

JNIEXPORT jlong JNICALL Java_layersec_Native_certFromMemory(JNIEnv *env, jclass cls,
                                                            jbyteArray data) {
    (void)cls;
    buf d;
    ls_cert *out = NULL;
    if (buf_get(env, data, &d, 1, "data") != 0) {
        return 0;
    }
    ls_result rc = ls_cert_from_memory(d.data, d.len, &out);
    buf_free(&d);
    if (rc != LS_OK) {
        throw_result(env, rc);
        return 0;
    }
    return HANDLE(out);
}

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_certSubject(JNIEnv *env, jclass cls,
                                                              jlong cert) {
    (void)cls;
    return cstr_bytes(env, ls_cert_subject(PTR(const ls_cert, cert)));
}

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_certToPem(JNIEnv *env, jclass cls, jlong cert) {
    (void)cls;
    ls_bytes b = {NULL, 0};
    return take_bytes(env, ls_cert_to_pem(PTR(const ls_cert, cert), &b), &b);
}

JNIEXPORT void JNICALL Java_layersec_Native_certFree(JNIEnv *env, jclass cls, jlong cert) {
    (void)env;
    (void)cls;
    ls_cert_free(PTR(ls_cert, cert));
}

/* ---- seal / open -------------------------------------------------------------------------- */

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_seal(JNIEnv *env, jclass cls, jlong signer,
                                                       jlongArray recipients, jbyteArray document,
                                                       jint flags, jbyteArray filename,
                                                       jbyteArray mime_type,
                                                       jint compression_level,
                                                       jlong signing_time, jint profile) {
    (void)cls;
    buf doc, fname, mime;
    jsize n = 0;
    jlong *handles = NULL;
    const ls_cert **certs = NULL;
    jbyteArray result = NULL;

    if (recipients == NULL) {
        throw_class(env, "java/lang/NullPointerException", "recipients");
        return NULL;
    }
    n = (*env)->GetArrayLength(env, recipients);
    if (n > 0) {
        handles = malloc(sizeof(jlong) * (size_t)n);
        certs = malloc(sizeof(const ls_cert *) * (size_t)n);
        if (handles == NULL || certs == NULL) {
            free(handles);
            free(certs);
            throw_class(env, "java/lang/OutOfMemoryError", "layersec: recipients");
            return NULL;
        }
        (*env)->GetLongArrayRegion(env, recipients, 0, n, handles);
        for (jsize i = 0; i < n; i++) {
            certs[i] = PTR(const ls_cert, handles[i]);
        }
    }
    if (buf_get(env, document, &doc, 1, "document") != 0) {
        goto out_certs;
    }
    if (str_get(env, filename, &fname, 0, "filename") != 0) {
        goto out_doc;
    }
    if (str_get(env, mime_type, &mime, 0, "mimeType") != 0) {
        goto out_fname;
    }

    ls_seal_options opts;
    ls_seal_options_init(&opts);
    opts.flags = (uint32_t)flags;
    opts.filename = (const char *)fname.data;
    opts.mime_type = (const char *)mime.data;
    opts.compression_level = (uint32_t)compression_level;
    opts.signing_time = (int64_t)signing_time;
    opts.profile = (uint32_t)profile;

    ls_bytes sealed = {NULL, 0};
    ls_result rc = ls_seal(PTR(const ls_identity, signer), certs, (size_t)n, doc.data, doc.len,
                           &opts, &sealed);
    result = take_bytes(env, rc, &sealed);

    buf_free(&mime);
out_fname:
    buf_free(&fname);
out_doc:
    buf_free(&doc);
out_certs:
    free(handles);
    free(certs);
    return result;
}

JNIEXPORT jlong JNICALL Java_layersec_Native_open(JNIEnv *env, jclass cls, jlong recipient,
                                                  jbyteArray data, jint flags, jlong max_output,
                                                  jlong sender, jint profile) {
    (void)cls;
    buf in;
    ls_opened *out = NULL;
    if (buf_get(env, data, &in, 1, "data") != 0) {
        return 0;
    }
    ls_open_options opts;
    ls_open_options_init(&opts);
    opts.flags = (uint32_t)flags;
    opts.max_output = (uint64_t)max_output;
    opts.sender = PTR(const ls_cert, sender);
    opts.profile = (uint32_t)profile;
    ls_result rc = ls_open(PTR(const ls_identity, recipient), in.data, in.len, &opts, &out);
    buf_free(&in);
    if (rc != LS_OK) {
        throw_result(env, rc);
        return 0;
    }
    return HANDLE(out);
}

/* ---- opened documents --------------------------------------------------------------------- */

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_openedDocument(JNIEnv *env, jclass cls,
                                                                 jlong opened) {
    (void)cls;
    const uint8_t *data = NULL;
    size_t len = 0;
    ls_result rc = ls_opened_document(PTR(const ls_opened, opened), &data, &len);
    if (rc != LS_OK) {
        throw_result(env, rc);
        return NULL;
    }
    return new_bytes(env, data, len);
}

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_openedFilename(JNIEnv *env, jclass cls,
                                                                 jlong opened) {
    (void)cls;
    return cstr_bytes(env, ls_opened_filename(PTR(const ls_opened, opened)));
}

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_openedSafeFilename(JNIEnv *env, jclass cls,
                                                                     jlong opened) {
    (void)cls;
    return cstr_bytes(env, ls_opened_safe_filename(PTR(const ls_opened, opened)));
}

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_openedMimeType(JNIEnv *env, jclass cls,
                                                                 jlong opened) {
    (void)cls;
    return cstr_bytes(env, ls_opened_mime_type(PTR(const ls_opened, opened)));
}

JNIEXPORT jlong JNICALL Java_layersec_Native_openedSignerCopy(JNIEnv *env, jclass cls,
                                                              jlong opened) {
    (void)cls;
    const ls_cert *signer = ls_opened_signer(PTR(const ls_opened, opened));
    if (signer == NULL) {
        return 0;
    }
    /* The signer is borrowed from the ls_opened: an owned copy through its PEM. */
    ls_bytes pem = {NULL, 0};
    ls_cert *copy = NULL;
    ls_result rc = ls_cert_to_pem(signer, &pem);
    if (rc == LS_OK) {
        rc = ls_cert_from_memory(pem.data, pem.len, &copy);
    }
    ls_bytes_free(&pem);
    if (rc != LS_OK) {
        throw_result(env, rc);
        return 0;
    }
    return HANDLE(copy);
}

JNIEXPORT jlong JNICALL Java_layersec_Native_openedSigningTime(JNIEnv *env, jclass cls,
                                                               jlong opened) {
    (void)env;
    (void)cls;
    return (jlong)ls_opened_signing_time(PTR(const ls_opened, opened));
}

JNIEXPORT jboolean JNICALL Java_layersec_Native_openedWasEncrypted(JNIEnv *env, jclass cls,
                                                                   jlong opened) {
    (void)env;
    (void)cls;
    return ls_opened_was_encrypted(PTR(const ls_opened, opened)) ? JNI_TRUE : JNI_FALSE;
}

JNIEXPORT jlong JNICALL Java_layersec_Native_openedSize(JNIEnv *env, jclass cls, jlong opened) {
    (void)env;
    (void)cls;
    return (jlong)ls_opened_size(PTR(const ls_opened, opened));
}

JNIEXPORT void JNICALL Java_layersec_Native_openedFree(JNIEnv *env, jclass cls, jlong opened) {
    (void)env;
    (void)cls;
    ls_opened_free(PTR(ls_opened, opened));
}

/* ---- the client of a Messaging Service ------------------------------------------------------ */

JNIEXPORT jlong JNICALL Java_layersec_Native_clientNew(JNIEnv *env, jclass cls, jbyteArray path) {
    (void)cls;
    buf p;
    ls_client *out = NULL;
    if (str_get(env, path, &p, 1, "configPath") != 0) {
        return 0;
    }
    ls_result rc = ls_client_new_from_config((const char *)p.data, &out);
    buf_free(&p);
    if (rc != LS_OK) {
        throw_result(env, rc);
        return 0;
    }
    return HANDLE(out);
}

JNIEXPORT void JNICALL Java_layersec_Native_clientFree(JNIEnv *env, jclass cls, jlong client) {
    (void)env;
    (void)cls;
    ls_client_free(PTR(ls_client, client));
}

/* A failed send: the LayerSecException of rc, wrapped by LayerSecException.queued(messageId,
 * cause) into a QueuedForRetryException when the library still gave a MessageId (queued). */
static void throw_send(JNIEnv *env, ls_result rc, const ls_bytes *mid) {
    throw_result(env, rc);
    if (mid->data == NULL) {
        return;
    }
    jthrowable cause = (*env)->ExceptionOccurred(env);
    if (cause == NULL) {
        return;
    }
    /* No JNI call but these with an exception pending: take it first. */
    (*env)->ExceptionClear(env);
    if (!(*env)->IsInstanceOf(env, cause, g_exception)) {
        (*env)->Throw(env, cause); /* an OutOfMemoryError or similar: let it through as is */
        return;
    }
    jbyteArray jmid = new_bytes(env, mid->data, mid->len);
    if (jmid == NULL) {
        return; /* its OutOfMemoryError is pending */
    }
    jobject q = (*env)->CallStaticObjectMethod(env, g_exception, g_queued, jmid, cause);
    if (q != NULL && !(*env)->ExceptionCheck(env)) {
        (*env)->Throw(env, (jthrowable)q);
    } else if (!(*env)->ExceptionCheck(env)) {
        (*env)->Throw(env, cause);
    }
}

/* ls_client_send (data non-null) or ls_client_send_file (path non-null). */
JNIEXPORT jbyteArray JNICALL Java_layersec_Native_clientSend(JNIEnv *env, jclass cls,
                                                             jlong client, jbyteArray data,
                                                             jbyteArray name, jbyteArray path,
                                                             jbyteArray to, jbyteArray service,
                                                             jbyteArray action,
                                                             jbyteArray conversation, jint flags) {
    (void)cls;
    buf d = {0}, n = {0}, p = {0}, t = {0}, s = {0}, a = {0}, c = {0};
    jbyteArray result = NULL;
    if (buf_get(env, data, &d, 0, "data") != 0 || str_get(env, name, &n, 0, "name") != 0 ||
        str_get(env, path, &p, 0, "path") != 0 || str_get(env, to, &t, 1, "to") != 0 ||
        str_get(env, service, &s, 0, "service") != 0 ||
        str_get(env, action, &a, 0, "action") != 0 ||
        str_get(env, conversation, &c, 0, "conversation") != 0) {
        goto out;
    }
    ls_send_options opts;
    ls_send_options_init(&opts);
    opts.flags = (uint32_t)flags;
    opts.service = (const char *)s.data;
    opts.action = (const char *)a.data;
    opts.conversation = (const char *)c.data;
    ls_bytes mid = {NULL, 0};
    ls_result rc;
    if (p.data != NULL) {
        rc = ls_client_send_file(PTR(ls_client, client), (const char *)p.data,
                                 (const char *)t.data, &opts, &mid);
    } else {
        rc = ls_client_send(PTR(ls_client, client), d.len > 0 ? d.data : NULL, d.len,
                            (const char *)n.data, (const char *)t.data, &opts, &mid);
    }
    if (rc != LS_OK) {
        throw_send(env, rc, &mid);
    } else {
        result = new_bytes(env, mid.data, mid.len);
    }
    ls_bytes_free(&mid);
out:
    buf_free(&d);
    buf_free(&n);
    buf_free(&p);
    buf_free(&t);
    buf_free(&s);
    buf_free(&a);
    buf_free(&c);
    return result;
}

/* The userdata of ls_client_poll's callback. */
typedef struct {
    JNIEnv *env;          /* of the thread that called poll */
    jobject sink;         /* a layersec.Client.Sink (local ref, valid during the call) */
    jthrowable thrown;    /* global ref of what the sink threw, or NULL */
    int lost;             /* it threw, but the exception could not be kept */
} poll_ctx;

/*
 * The ls_received_cb. It never lets a Java exception stay pending in the library's code: what
 * the sink (or an allocation) throws is taken (ExceptionOccurred + ExceptionClear), kept in the
 * context and rethrown once ls_client_poll has returned; the callback then returns 1, which
 * stops the poll after this document (its receipt is still posted, as the header says). It is
 * called on the thread of ls_client_poll; on any other thread it stops the poll untouched.
 */
static int32_t on_received(void *userdata, const ls_received *doc) {
    poll_ctx *ctx = userdata;
    JNIEnv *env = NULL;
    if (ctx == NULL || ctx->thrown != NULL || ctx->lost || doc == NULL || g_vm == NULL ||
        (*g_vm)->GetEnv(g_vm, (void **)&env, JNI_VERSION_1_8) != JNI_OK || env != ctx->env) {
        return 1;
    }
    if ((*env)->PushLocalFrame(env, 8) != 0) {
        goto caught;
    }
    jbyteArray path = cstr_bytes(env, doc->path != NULL ? doc->path : "");
    jbyteArray name = path ? cstr_bytes(env, doc->name != NULL ? doc->name : "") : NULL;
    jbyteArray sender = name ? cstr_bytes(env, doc->sender != NULL ? doc->sender : "") : NULL;
    jbyteArray mid = sender ? cstr_bytes(env, doc->message_id ? doc->message_id : "") : NULL;
    jbyteArray conv = mid ? cstr_bytes(env, doc->conversation_id ? doc->conversation_id : "")
                          : NULL;
    if (conv != NULL) {
        (*env)->CallVoidMethod(env, ctx->sink, g_sink_received, path, name, sender, mid, conv,
                               (jlong)doc->size, (jlong)doc->signing_time,
                               (jlong)doc->received_at);
    }
    (*env)->PopLocalFrame(env, NULL);
    if (!(*env)->ExceptionCheck(env)) {
        return 0;
    }
caught:;
    jthrowable t = (*env)->ExceptionOccurred(env);
    (*env)->ExceptionClear(env);
    if (t != NULL) {
        ctx->thrown = (*env)->NewGlobalRef(env, t);
        (*env)->DeleteLocalRef(env, t);
    }
    if (ctx->thrown == NULL) {
        ctx->lost = 1; /* could not even keep it: an OutOfMemoryError after the poll */
        (*env)->ExceptionClear(env);
    }
    return 1;
}

JNIEXPORT jlong JNICALL Java_layersec_Native_clientPoll(JNIEnv *env, jclass cls, jlong client,
                                                        jobject sink) {
    (void)cls;
    poll_ctx ctx = {env, sink, NULL, 0};
    size_t count = 0;
    ls_result rc = ls_client_poll(PTR(ls_client, client), sink != NULL ? on_received : NULL,
                                  &ctx, &count);
    /* The sink's exception wins over the library's result: it is why the poll stopped. */
    if (ctx.thrown != NULL) {
        (*env)->Throw(env, ctx.thrown);
        (*env)->DeleteGlobalRef(env, ctx.thrown);
        return (jlong)count;
    }
    if (ctx.lost) {
        throw_class(env, "java/lang/OutOfMemoryError",
                    "layersec: the poll callback failed and its exception could not be kept");
        return (jlong)count;
    }
    if (rc != LS_OK) {
        throw_result(env, rc);
    }
    return (jlong)count;
}

JNIEXPORT jlong JNICALL Java_layersec_Native_clientRunDueJobs(JNIEnv *env, jclass cls,
                                                              jlong client) {
    (void)cls;
    size_t sent = 0;
    ls_result rc = ls_client_run_due_jobs(PTR(ls_client, client), &sent);
    if (rc != LS_OK) {
        throw_result(env, rc);
        return 0;
    }
    return (jlong)sent;
}

JNIEXPORT jint JNICALL Java_layersec_Native_clientReceiptState(JNIEnv *env, jclass cls,
                                                               jlong client, jbyteArray mid) {
    (void)cls;
    buf m;
    int32_t state = 0;
    if (str_get(env, mid, &m, 1, "messageId") != 0) {
        return 0;
    }
    ls_result rc = ls_client_receipt_state(PTR(const ls_client, client), (const char *)m.data,
                                           &state);
    buf_free(&m);
    if (rc != LS_OK) {
        throw_result(env, rc);
        return 0;
    }
    return (jint)state;
}

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_clientReceipts(JNIEnv *env, jclass cls,
                                                                 jlong client,
                                                                 jboolean waiting_only) {
    (void)cls;
    ls_bytes out = {NULL, 0};
    ls_result rc = ls_client_receipts(PTR(const ls_client, client), waiting_only ? 1 : 0, &out);
    return take_bytes(env, rc, &out);
}
