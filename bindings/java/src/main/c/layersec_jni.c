/*
 * layersec_jni.c: the JNI glue of the Java binding (liblayersec_jni.so), written in C over the
 * public C ABI of include/layersec.h only (docs/ARCHITECTURE.md says why). Each function of
 * layersec.Native is one C call here plus the conversions, which live in the helpers below:
 *
 * - handles travel as jlong; the Java side guarantees they are live for the call;
 * - byte[] inputs are copied into native buffers (args_*: GetByteArrayRegion into malloc'd
 *   memory, all freed together by args_free), so the library holds no pointer into the Java
 *   heap and the GC is not blocked while it works; a buffer that held a password or a key is
 *   wiped before it is freed. The one exception: the document of ls_seal and the message of
 *   ls_open, from 1 MiB on, are used in place (doc_get: GetPrimitiveArrayCritical, no copy);
 *   the GC then waits until that call returns. Not so when the identity of the call (the
 *   signer of ls_seal, the recipient of ls_open) is on a PKCS#11 token
 *   (ls_identity_is_on_token): the library then waits on the token, so the document is copied;
 * - strings come NUL-terminated UTF-8 from Java (layersec.Utf8), never as jstring (JNI's
 *   "modified UTF-8" differs for NUL and characters beyond the BMP), and go back as byte[];
 * - a failed ls_result throws the layersec.LayerSecException of its code (throw_result), made
 *   by LayerSecException.fromNative(code, name, message, transient) from ls_result_name() and
 *   the thread's ls_last_error_message() and ls_last_error_is_transient(), read right after
 *   the failed call, before any other ls_ call;
 * - ls_bytes output is copied once into a new byte[] and freed at once (take_bytes); a new
 *   handle goes back as jlong (take_handle).
 *
 * Every path that could fail in the JVM (allocation) leaves a pending exception and returns;
 * nothing here aborts the process. Compiled with -Wall -Wextra -Werror (less
 * -Wunused-parameter: JNI fixes the signatures, and most functions ignore their jclass) against
 * the header javac -h generates, so a signature that drifts from Native.java does not compile.
 */

#define _DEFAULT_SOURCE /* explicit_bzero */
#include <errno.h>
#include <jni.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "layersec.h"
#include "layersec_Native.h"

static jclass g_exception;        /* layersec.LayerSecException (global ref) */
static jmethodID g_from_native;   /* its static fromNative(int, byte[], byte[], boolean) */
static jmethodID g_queued;        /* its static queued(byte[], LayerSecException) */
static jmethodID g_sink_received; /* layersec.Client.Sink.received(byte[] x5, long x3) */
static jmethodID g_in_read;       /* java.io.InputStream.read(byte[], int, int) */
static jmethodID g_out_write;     /* java.io.OutputStream.write(byte[], int, int) */
static JavaVM *g_vm;

/* A method of a class by name; NULL (with an exception pending) when missing. */
static jmethodID method(JNIEnv *env, const char *cls, const char *name, const char *sig,
                        int is_static) {
    jclass c = (*env)->FindClass(env, cls);
    if (c == NULL) {
        return NULL;
    }
    jmethodID m = is_static ? (*env)->GetStaticMethodID(env, c, name, sig)
                            : (*env)->GetMethodID(env, c, name, sig);
    (*env)->DeleteLocalRef(env, c);
    return m;
}

JNIEXPORT jint JNICALL JNI_OnLoad(JavaVM *vm, void *reserved) {
    JNIEnv *env;
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
    g_from_native = method(env, "layersec/LayerSecException", "fromNative",
                           "(I[B[BZ)Llayersec/LayerSecException;", 1);
    g_queued = method(env, "layersec/LayerSecException", "queued",
                      "([BLlayersec/LayerSecException;)Llayersec/LayerSecException;", 1);
    g_sink_received = method(env, "layersec/Client$Sink", "received", "([B[B[B[B[BJJJ)V", 0);
    g_in_read = method(env, "java/io/InputStream", "read", "([BII)I", 0);
    g_out_write = method(env, "java/io/OutputStream", "write", "([BII)V", 0);
    if (g_from_native == NULL || g_queued == NULL || g_sink_received == NULL ||
        g_in_read == NULL || g_out_write == NULL) {
        return JNI_ERR;
    }
    g_vm = vm;
    return JNI_VERSION_1_8;
}

JNIEXPORT void JNICALL JNI_OnUnload(JavaVM *vm, void *reserved) {
    JNIEnv *env;
    if ((*vm)->GetEnv(vm, (void **)&env, JNI_VERSION_1_8) == JNI_OK && g_exception != NULL) {
        (*env)->DeleteGlobalRef(env, g_exception);
        g_exception = NULL;
    }
}

/* ---- results ------------------------------------------------------------------------------ */

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

/* Throws the LayerSecException of a failed result. Call it right after the failed ls_ call:
 * it reads the thread's message and transient flag before anything else can change them. */
static void throw_result(JNIEnv *env, ls_result rc) {
    const char *msg = ls_last_error_message();
    jboolean transient = ls_last_error_is_transient() ? JNI_TRUE : JNI_FALSE;
    const char *name = ls_result_name(rc);
    if ((*env)->ExceptionCheck(env)) {
        return;
    }
    jbyteArray jmsg = cstr_bytes(env, msg != NULL ? msg : "");
    jbyteArray jname = jmsg ? cstr_bytes(env, name != NULL ? name : "LS_UNKNOWN") : NULL;
    if (jname == NULL) {
        return; /* an OutOfMemoryError is pending */
    }
    jobject ex = (*env)->CallStaticObjectMethod(env, g_exception, g_from_native, (jint)rc, jname,
                                                jmsg, transient);
    if (ex != NULL && !(*env)->ExceptionCheck(env)) {
        (*env)->Throw(env, (jthrowable)ex);
    }
}

#define PTR(type, h) ((type *)(intptr_t)(h))
#define HANDLE(p) ((jlong)(intptr_t)(p))

/* A new handle as jlong, or 0 with the exception of a failed rc. */
static jlong take_handle(JNIEnv *env, ls_result rc, void *out) {
    if (rc != LS_OK) {
        throw_result(env, rc);
        return 0;
    }
    return HANDLE(out);
}

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

/* Throws for a failed rc; returns whether it failed. */
static int failed(JNIEnv *env, ls_result rc) {
    if (rc != LS_OK) {
        throw_result(env, rc);
        return 1;
    }
    return 0;
}

/* ---- arguments: native copies of Java arrays, freed together ------------------------------- */

enum {
    OPTIONAL = 0,
    REQUIRED = 1, /* a null array throws NullPointerException */
    SECRET = 2,   /* wiped before it is freed (a password, a private key) */
};

#define MAX_ARGS 10

/* The native copies one JNI call makes. Once one copy fails (its exception pending), the
 * later args_* calls do nothing and return NULL: check `failed` once before the ls_ call. */
typedef struct {
    JNIEnv *env;
    int failed;
    int n;
    struct {
        void *data;
        size_t len;
        int secret;
    } mem[MAX_ARGS];
} args;

#define ARGS(env) {(env), 0, 0, {{NULL, 0, 0}}}

/* len bytes of native memory owned by a; NULL (failed) when out of memory. */
static void *args_alloc(args *a, size_t len, int secret) {
    if (a->failed) {
        return NULL;
    }
    void *p = a->n < MAX_ARGS ? malloc(len > 0 ? len : 1) : NULL;
    if (p == NULL) {
        a->failed = 1;
        throw_class(a->env, "java/lang/OutOfMemoryError", "layersec: cannot copy an argument");
        return NULL;
    }
    a->mem[a->n].data = p;
    a->mem[a->n].len = len;
    a->mem[a->n].secret = secret;
    a->n++;
    return p;
}

/* A copy of a byte[] with a NUL after it; *len (nullable) gets its length. NULL for a null
 * array (then NullPointerException if REQUIRED) and when failed. */
static const uint8_t *args_bytes(args *a, jbyteArray arr, int how, const char *what,
                                 size_t *len) {
    if (len != NULL) {
        *len = 0;
    }
    if (a->failed) {
        return NULL;
    }
    if (arr == NULL) {
        if (how & REQUIRED) {
            a->failed = 1;
            throw_class(a->env, "java/lang/NullPointerException", what);
        }
        return NULL;
    }
    jsize n = (*a->env)->GetArrayLength(a->env, arr);
    uint8_t *p = args_alloc(a, (size_t)n + 1, how & SECRET);
    if (p != NULL) {
        (*a->env)->GetByteArrayRegion(a->env, arr, 0, n, (jbyte *)p);
        p[n] = 0;
        if (len != NULL) {
            *len = (size_t)n;
        }
    }
    return p;
}

/* A NUL-terminated string (Java put the NUL there), or NULL as args_bytes. */
static const char *args_str(args *a, jbyteArray arr, int how, const char *what) {
    size_t len;
    const uint8_t *p = args_bytes(a, arr, how, what, &len);
    if (p != NULL && (len == 0 || p[len - 1] != 0)) {
        a->failed = 1;
        throw_class(a->env, "java/lang/IllegalArgumentException",
                    "layersec: internal: a string argument is not NUL-terminated");
        return NULL;
    }
    return (const char *)p;
}

/* The ls_cert pointers of a long[] of handles (*n gets the count; NULL for none). */
static const ls_cert *const *args_certs(args *a, jlongArray arr, size_t *n) {
    *n = 0;
    if (a->failed) {
        return NULL;
    }
    if (arr == NULL) {
        a->failed = 1;
        throw_class(a->env, "java/lang/NullPointerException", "recipients");
        return NULL;
    }
    jsize len = (*a->env)->GetArrayLength(a->env, arr);
    if (len == 0) {
        return NULL;
    }
    jlong *handles = args_alloc(a, sizeof(jlong) * (size_t)len, 0);
    const ls_cert **certs = args_alloc(a, sizeof(const ls_cert *) * (size_t)len, 0);
    if (certs == NULL) {
        return NULL;
    }
    (*a->env)->GetLongArrayRegion(a->env, arr, 0, len, handles);
    for (jsize i = 0; i < len; i++) {
        certs[i] = PTR(const ls_cert, handles[i]);
    }
    *n = (size_t)len;
    return certs;
}

static void args_free(args *a) {
    for (int i = 0; i < a->n; i++) {
        if (a->mem[i].secret) {
            explicit_bzero(a->mem[i].data, a->mem[i].len);
        }
        free(a->mem[i].data);
    }
    a->n = 0;
}

/* Documents from this size on are used in place (pinned) instead of copied. */
#define PIN_FROM (1024 * 1024)

/* A document byte[] for one ls_seal/ls_open call: below PIN_FROM copied like any argument;
 * from PIN_FROM on used in place with GetPrimitiveArrayCritical, which saves a copy as large as
 * the document (about 25 ms per 100 MiB here) but makes the GC wait until doc_release. So:
 * call doc_get after every other args_* call, make the ls_ call, and call doc_release right
 * after it, with no JNI call in between (ls_seal and ls_open call none: they take no callbacks
 * and the library has no process-wide one, such as a logger).
 *
 * `identity` is the signer (ls_seal) or the recipient (ls_open), nullable. When its key is on a
 * token (ls_identity_is_on_token) the document is copied whatever its size: the call then
 * blocks on the token's I/O, on the key's session pool and perhaps on a re-login, and a GC
 * waiting for all that would stall every allocating thread of the JVM. */
typedef struct {
    jbyteArray arr;
    void *pinned;
} doc_ref;

static const uint8_t *doc_get(args *a, doc_ref *d, const ls_identity *identity,
                              jbyteArray arr, const char *what, size_t *len) {
    d->arr = arr;
    d->pinned = NULL;
    *len = 0;
    if (a->failed || arr == NULL || (*a->env)->GetArrayLength(a->env, arr) < PIN_FROM ||
        ls_identity_is_on_token(identity)) {
        return args_bytes(a, arr, REQUIRED, what, len);
    }
    *len = (size_t)(*a->env)->GetArrayLength(a->env, arr);
    d->pinned = (*a->env)->GetPrimitiveArrayCritical(a->env, arr, NULL);
    if (d->pinned == NULL) {
        a->failed = 1; /* an OutOfMemoryError is pending */
    }
    return d->pinned;
}

static void doc_release(JNIEnv *env, doc_ref *d) {
    if (d->pinned != NULL) {
        (*env)->ReleasePrimitiveArrayCritical(env, d->arr, d->pinned, JNI_ABORT);
        d->pinned = NULL;
    }
}

/* The last parameters of Native's seal* functions: the fields of ls_seal_options. */
#define SEAL_OPTIONS                                                                         \
    jint flags, jbyteArray filename, jbyteArray mime_type, jint compression_level,           \
        jlong signing_time, jint profile
/* The last parameters of Native's open* functions: the fields of ls_open_options. */
#define OPEN_OPTIONS jint flags, jlong max_output, jlong sender, jlong partners, jint profile

/* The recipients (*n of them) and options of a seal* call. */
static const ls_cert *const *seal_args(args *a, jlongArray recipients, size_t *n,
                                       ls_seal_options *o, SEAL_OPTIONS) {
    const ls_cert *const *certs = args_certs(a, recipients, n);
    ls_seal_options_init(o);
    o->flags = (uint32_t)flags;
    o->filename = args_str(a, filename, OPTIONAL, "filename");
    o->mime_type = args_str(a, mime_type, OPTIONAL, "mimeType");
    o->compression_level = (uint32_t)compression_level;
    o->signing_time = (int64_t)signing_time;
    o->profile = (uint32_t)profile;
    return certs;
}

/* The ls_open_options of an open* call. */
static void open_options(ls_open_options *o, OPEN_OPTIONS) {
    ls_open_options_init(o);
    o->flags = (uint32_t)flags;
    o->max_output = (uint64_t)max_output;
    o->sender = PTR(const ls_cert, sender);
    o->partners = PTR(const ls_certstore, partners);
    o->profile = (uint32_t)profile;
}

/* ---- version ------------------------------------------------------------------------------ */

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_version(JNIEnv *env, jclass cls) {
    return cstr_bytes(env, ls_version());
}

/* ---- identities --------------------------------------------------------------------------- */

JNIEXPORT jlong JNICALL Java_layersec_Native_identityLoad(JNIEnv *env, jclass cls,
                                                          jbyteArray key_path,
                                                          jbyteArray cert_path,
                                                          jbyteArray password) {
    args a = ARGS(env);
    const char *k = args_str(&a, key_path, REQUIRED, "keyPath");
    const char *c = args_str(&a, cert_path, OPTIONAL, "certPath");
    const char *p = args_str(&a, password, SECRET, "password");
    jlong h = 0;
    if (!a.failed) {
        ls_identity *out = NULL;
        ls_result rc = ls_identity_load(k, c, p, &out);
        h = take_handle(env, rc, out);
    }
    args_free(&a);
    return h;
}

JNIEXPORT jlong JNICALL Java_layersec_Native_identityLoadPkcs11(JNIEnv *env, jclass cls,
                                                                jbyteArray uri,
                                                                jbyteArray module_path,
                                                                jbyteArray pin,
                                                                jbyteArray cert_path) {
    args a = ARGS(env);
    const char *u = args_str(&a, uri, REQUIRED, "uri");
    const char *m = args_str(&a, module_path, OPTIONAL, "module");
    const char *p = args_str(&a, pin, SECRET, "pin");
    const char *c = args_str(&a, cert_path, OPTIONAL, "certificate");
    jlong h = 0;
    if (!a.failed) {
        ls_identity *out = NULL;
        ls_result rc = ls_identity_load_pkcs11(u, m, p, c, &out);
        h = take_handle(env, rc, out);
    }
    args_free(&a);
    return h;
}

JNIEXPORT jboolean JNICALL Java_layersec_Native_identityIsOnToken(JNIEnv *env, jclass cls,
                                                                 jlong identity) {
    return ls_identity_is_on_token(PTR(const ls_identity, identity)) ? JNI_TRUE : JNI_FALSE;
}

JNIEXPORT jlong JNICALL Java_layersec_Native_identityFromMemory(JNIEnv *env, jclass cls,
                                                                jbyteArray key, jbyteArray cert,
                                                                jbyteArray password) {
    args a = ARGS(env);
    size_t klen, clen;
    const uint8_t *k = args_bytes(&a, key, REQUIRED | SECRET, "key", &klen);
    const uint8_t *c = args_bytes(&a, cert, OPTIONAL, "cert", &clen);
    const char *p = args_str(&a, password, SECRET, "password");
    jlong h = 0;
    if (!a.failed) {
        ls_identity *out = NULL;
        ls_result rc = ls_identity_from_memory(k, klen, c, clen, p, &out);
        h = take_handle(env, rc, out);
    }
    args_free(&a);
    return h;
}

JNIEXPORT jlong JNICALL Java_layersec_Native_identityGenerate(JNIEnv *env, jclass cls,
                                                              jbyteArray party_id, jint key_type,
                                                              jint days, jbyteArray password) {
    if (days < 0) {
        throw_class(env, "java/lang/IllegalArgumentException", "days must not be negative");
        return 0;
    }
    args a = ARGS(env);
    const char *id = args_str(&a, party_id, REQUIRED, "partyId");
    const char *p = args_str(&a, password, SECRET, "password");
    jlong h = 0;
    if (!a.failed) {
        ls_identity *out = NULL;
        ls_result rc = ls_identity_generate(id, (ls_key_type)key_type, (uint32_t)days, p, &out);
        h = take_handle(env, rc, out);
    }
    args_free(&a);
    return h;
}

JNIEXPORT jlong JNICALL Java_layersec_Native_identityCert(JNIEnv *env, jclass cls,
                                                          jlong identity) {
    ls_cert *out = NULL;
    ls_result rc = ls_identity_cert(PTR(const ls_identity, identity), &out);
    return take_handle(env, rc, out);
}

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_identityKeyPem(JNIEnv *env, jclass cls,
                                                                 jlong identity) {
    ls_bytes b = {NULL, 0};
    return take_bytes(env, ls_identity_key_pem(PTR(const ls_identity, identity), &b), &b);
}

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_identityCsrPem(JNIEnv *env, jclass cls,
                                                                 jlong identity) {
    ls_bytes b = {NULL, 0};
    return take_bytes(env, ls_identity_csr_pem(PTR(const ls_identity, identity), &b), &b);
}

JNIEXPORT void JNICALL Java_layersec_Native_identityFree(JNIEnv *env, jclass cls,
                                                         jlong identity) {
    ls_identity_free(PTR(ls_identity, identity));
}

/* ---- certificates and certificate stores -------------------------------------------------- */

JNIEXPORT jlong JNICALL Java_layersec_Native_certLoad(JNIEnv *env, jclass cls, jbyteArray path) {
    args a = ARGS(env);
    const char *p = args_str(&a, path, REQUIRED, "path");
    jlong h = 0;
    if (!a.failed) {
        ls_cert *out = NULL;
        ls_result rc = ls_cert_load(p, &out);
        h = take_handle(env, rc, out);
    }
    args_free(&a);
    return h;
}

JNIEXPORT jlong JNICALL Java_layersec_Native_certFromMemory(JNIEnv *env, jclass cls,
                                                            jbyteArray data) {
    args a = ARGS(env);
    size_t len;
    const uint8_t *d = args_bytes(&a, data, REQUIRED, "data", &len);
    jlong h = 0;
    if (!a.failed) {
        ls_cert *out = NULL;
        ls_result rc = ls_cert_from_memory(d, len, &out);
        h = take_handle(env, rc, out);
    }
    args_free(&a);
    return h;
}

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_certSubject(JNIEnv *env, jclass cls,
                                                              jlong cert) {
    return cstr_bytes(env, ls_cert_subject(PTR(const ls_cert, cert)));
}

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_certToPem(JNIEnv *env, jclass cls, jlong cert) {
    ls_bytes b = {NULL, 0};
    return take_bytes(env, ls_cert_to_pem(PTR(const ls_cert, cert), &b), &b);
}

JNIEXPORT void JNICALL Java_layersec_Native_certFree(JNIEnv *env, jclass cls, jlong cert) {
    ls_cert_free(PTR(ls_cert, cert));
}

JNIEXPORT jlong JNICALL Java_layersec_Native_certstoreNew(JNIEnv *env, jclass cls) {
    ls_certstore *out = NULL;
    ls_result rc = ls_certstore_new(&out);
    return take_handle(env, rc, out);
}

JNIEXPORT jlong JNICALL Java_layersec_Native_certstoreLoadDir(JNIEnv *env, jclass cls,
                                                              jbyteArray path) {
    args a = ARGS(env);
    const char *p = args_str(&a, path, REQUIRED, "path");
    jlong h = 0;
    if (!a.failed) {
        ls_certstore *out = NULL;
        ls_result rc = ls_certstore_load_dir(p, &out);
        h = take_handle(env, rc, out);
    }
    args_free(&a);
    return h;
}

JNIEXPORT void JNICALL Java_layersec_Native_certstoreAddPartner(JNIEnv *env, jclass cls,
                                                                jlong store, jlong cert,
                                                                jbyteArray party_id) {
    args a = ARGS(env);
    const char *id = args_str(&a, party_id, OPTIONAL, "partyId");
    if (!a.failed) {
        failed(env, ls_certstore_add_partner(PTR(ls_certstore, store), PTR(const ls_cert, cert),
                                             id));
    }
    args_free(&a);
}

JNIEXPORT void JNICALL Java_layersec_Native_certstoreAddAnchor(JNIEnv *env, jclass cls,
                                                               jlong store, jlong cert) {
    failed(env, ls_certstore_add_anchor(PTR(ls_certstore, store), PTR(const ls_cert, cert)));
}

JNIEXPORT void JNICALL Java_layersec_Native_certstoreFree(JNIEnv *env, jclass cls, jlong store) {
    ls_certstore_free(PTR(ls_certstore, store));
}

/* ---- seal / open / inspect ---------------------------------------------------------------- */

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_seal(JNIEnv *env, jclass cls, jlong signer,
                                                       jlongArray recipients, jbyteArray document,
                                                       SEAL_OPTIONS) {
    args a = ARGS(env);
    size_t n, len;
    ls_seal_options opts;
    const ls_cert *const *certs = seal_args(&a, recipients, &n, &opts, flags, filename,
                                            mime_type, compression_level, signing_time, profile);
    doc_ref d;
    const uint8_t *doc =
        doc_get(&a, &d, PTR(const ls_identity, signer), document, "document", &len);
    jbyteArray result = NULL;
    if (!a.failed) {
        ls_bytes sealed = {NULL, 0};
        ls_result rc = ls_seal(PTR(const ls_identity, signer), certs, n, doc, len, &opts,
                               &sealed);
        doc_release(env, &d);
        result = take_bytes(env, rc, &sealed);
    }
    args_free(&a);
    return result;
}

JNIEXPORT void JNICALL Java_layersec_Native_sealFile(JNIEnv *env, jclass cls, jlong signer,
                                                     jlongArray recipients, jbyteArray in_path,
                                                     jbyteArray out_path, SEAL_OPTIONS) {
    args a = ARGS(env);
    size_t n;
    ls_seal_options opts;
    const ls_cert *const *certs = seal_args(&a, recipients, &n, &opts, flags, filename,
                                            mime_type, compression_level, signing_time, profile);
    const char *in = args_str(&a, in_path, REQUIRED, "in");
    const char *out = args_str(&a, out_path, REQUIRED, "out");
    if (!a.failed) {
        failed(env, ls_seal_file(PTR(const ls_identity, signer), certs, n, in, out, &opts));
    }
    args_free(&a);
}

JNIEXPORT jlong JNICALL Java_layersec_Native_open(JNIEnv *env, jclass cls, jlong recipient,
                                                  jbyteArray data, OPEN_OPTIONS) {
    args a = ARGS(env);
    size_t len;
    doc_ref d;
    const uint8_t *in = doc_get(&a, &d, PTR(const ls_identity, recipient), data, "data", &len);
    jlong h = 0;
    if (!a.failed) {
        ls_open_options opts;
        open_options(&opts, flags, max_output, sender, partners, profile);
        ls_opened *out = NULL;
        ls_result rc = ls_open(PTR(const ls_identity, recipient), in, len, &opts, &out);
        doc_release(env, &d);
        h = take_handle(env, rc, out);
    }
    args_free(&a);
    return h;
}

JNIEXPORT jlong JNICALL Java_layersec_Native_openFile(JNIEnv *env, jclass cls, jlong recipient,
                                                      jbyteArray in_path, jbyteArray out_path,
                                                      OPEN_OPTIONS) {
    args a = ARGS(env);
    const char *in = args_str(&a, in_path, REQUIRED, "in");
    const char *outp = args_str(&a, out_path, REQUIRED, "out");
    jlong h = 0;
    if (!a.failed) {
        ls_open_options opts;
        open_options(&opts, flags, max_output, sender, partners, profile);
        ls_opened *out = NULL;
        ls_result rc = ls_open_file(PTR(const ls_identity, recipient), in, outp, &opts, &out);
        h = take_handle(env, rc, out);
    }
    args_free(&a);
    return h;
}

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_inspect(JNIEnv *env, jclass cls,
                                                          jbyteArray data, jlong recipient,
                                                          jlong sender) {
    args a = ARGS(env);
    size_t len;
    const uint8_t *in = args_bytes(&a, data, REQUIRED, "data", &len);
    jbyteArray result = NULL;
    if (!a.failed) {
        ls_bytes json = {NULL, 0};
        ls_result rc = ls_inspect(in, len, PTR(const ls_identity, recipient),
                                  PTR(const ls_cert, sender), &json);
        result = take_bytes(env, rc, &json);
    }
    args_free(&a);
    return result;
}

/* ---- streams: ls_read_callback / ls_write_callback over InputStream / OutputStream ------------ */

#define STREAM_CHUNK (64 * 1024)

/* The userdata of both callbacks. Java exceptions are never left pending while the library
 * runs: what a stream throws is kept (global ref) and rethrown after the call (stream_end). */
typedef struct {
    JNIEnv *env;         /* of the calling thread: the callbacks run on it */
    jobject in;          /* java.io.InputStream */
    jobject out;         /* java.io.OutputStream */
    jbyteArray chunk;    /* a Java buffer of STREAM_CHUNK bytes, reused */
    jthrowable thrown;   /* global ref of what a stream threw, or NULL */
} stream_ctx;

/* Keeps the pending exception of a callback (the first one wins); the callback returns EIO. */
static int stream_caught(stream_ctx *s) {
    JNIEnv *env = s->env;
    jthrowable t = (*env)->ExceptionOccurred(env);
    (*env)->ExceptionClear(env);
    if (t != NULL && s->thrown == NULL) {
        s->thrown = (*env)->NewGlobalRef(env, t);
        (*env)->ExceptionClear(env); /* NewGlobalRef cannot fail but with OOM: then it is lost */
    }
    if (t != NULL) {
        (*env)->DeleteLocalRef(env, t);
    }
    return EIO;
}

static int stream_read(void *userdata, uint8_t *buf, size_t len, size_t *out_n) {
    stream_ctx *s = userdata;
    JNIEnv *env = s->env;
    *out_n = 0;
    if (s->thrown != NULL) {
        return EIO;
    }
    jint want = len < STREAM_CHUNK ? (jint)len : STREAM_CHUNK;
    jint got = (*env)->CallIntMethod(env, s->in, g_in_read, s->chunk, 0, want);
    if ((*env)->ExceptionCheck(env)) {
        return stream_caught(s);
    }
    if (got > 0) {
        if (got > want) {
            return EIO; /* a broken InputStream */
        }
        (*env)->GetByteArrayRegion(env, s->chunk, 0, got, (jbyte *)buf);
        *out_n = (size_t)got;
    }
    return 0; /* -1 (end) gives 0 bytes; read() never returns 0 for want > 0 */
}

static int stream_write(void *userdata, const uint8_t *buf, size_t len, size_t *out_n) {
    stream_ctx *s = userdata;
    JNIEnv *env = s->env;
    *out_n = 0;
    if (s->thrown != NULL) {
        return EIO;
    }
    jint n = len < STREAM_CHUNK ? (jint)len : STREAM_CHUNK;
    (*env)->SetByteArrayRegion(env, s->chunk, 0, n, (const jbyte *)buf);
    (*env)->CallVoidMethod(env, s->out, g_out_write, s->chunk, 0, n);
    if ((*env)->ExceptionCheck(env)) {
        return stream_caught(s);
    }
    *out_n = (size_t)n;
    return 0;
}

/* 0 with the chunk buffer made; -1 with an exception pending. */
static int stream_begin(stream_ctx *s, JNIEnv *env, jobject in, jobject out) {
    s->env = env;
    s->in = in;
    s->out = out;
    s->thrown = NULL;
    if (in == NULL || out == NULL) {
        throw_class(env, "java/lang/NullPointerException", in == NULL ? "in" : "out");
        return -1;
    }
    s->chunk = (*env)->NewByteArray(env, STREAM_CHUNK);
    return s->chunk == NULL ? -1 : 0;
}

/* After the ls_*_stream call: the stream's exception wins over the library's LS_ERR_IO (it
 * is why the call failed); else a failed rc throws. Returns whether the call failed. */
static int stream_end(stream_ctx *s, ls_result rc) {
    JNIEnv *env = s->env;
    int bad = rc != LS_OK;
    if (bad && s->thrown == NULL) {
        throw_result(env, rc);
    }
    if (s->thrown != NULL) {
        bad = 1; /* the callback that threw returned EIO, so rc failed too */
        (*env)->Throw(env, s->thrown);
        (*env)->DeleteGlobalRef(env, s->thrown);
    }
    (*env)->DeleteLocalRef(env, s->chunk);
    return bad;
}

JNIEXPORT jlong JNICALL Java_layersec_Native_sealStream(JNIEnv *env, jclass cls, jlong signer,
                                                        jlongArray recipients, jobject in,
                                                        jobject out, SEAL_OPTIONS) {
    args a = ARGS(env);
    size_t n;
    ls_seal_options opts;
    const ls_cert *const *certs = seal_args(&a, recipients, &n, &opts, flags, filename,
                                            mime_type, compression_level, signing_time, profile);
    stream_ctx s;
    uint64_t size = 0;
    if (!a.failed && stream_begin(&s, env, in, out) == 0) {
        ls_result rc = ls_seal_stream(PTR(const ls_identity, signer), certs, n, stream_read, &s,
                                      stream_write, &s, &opts, &size);
        stream_end(&s, rc);
    }
    args_free(&a);
    return (jlong)size;
}

JNIEXPORT jlong JNICALL Java_layersec_Native_openStream(JNIEnv *env, jclass cls, jlong recipient,
                                                        jobject in, jobject out, OPEN_OPTIONS) {
    stream_ctx s;
    if (stream_begin(&s, env, in, out) != 0) {
        return 0;
    }
    ls_open_options opts;
    open_options(&opts, flags, max_output, sender, partners, profile);
    ls_opened *opened = NULL;
    ls_result rc = ls_open_stream(PTR(const ls_identity, recipient), stream_read, &s,
                                  stream_write, &s, &opts, &opened);
    if (stream_end(&s, rc)) {
        ls_opened_free(opened);
        return 0;
    }
    return HANDLE(opened);
}

/* ---- opened documents --------------------------------------------------------------------- */

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_openedDocument(JNIEnv *env, jclass cls,
                                                                 jlong opened) {
    const uint8_t *data = NULL;
    size_t len = 0;
    if (failed(env, ls_opened_document(PTR(const ls_opened, opened), &data, &len))) {
        return NULL;
    }
    return new_bytes(env, data, len);
}

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_openedFilename(JNIEnv *env, jclass cls,
                                                                 jlong opened) {
    return cstr_bytes(env, ls_opened_filename(PTR(const ls_opened, opened)));
}

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_openedSafeFilename(JNIEnv *env, jclass cls,
                                                                     jlong opened) {
    return cstr_bytes(env, ls_opened_safe_filename(PTR(const ls_opened, opened)));
}

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_openedMimeType(JNIEnv *env, jclass cls,
                                                                 jlong opened) {
    return cstr_bytes(env, ls_opened_mime_type(PTR(const ls_opened, opened)));
}

/* The verified signer's certificate as PEM (NULL when unsigned): Opened parses it into a
 * Certificate of its own only when asked (parsing costs as much as a small seal). */
JNIEXPORT jbyteArray JNICALL Java_layersec_Native_openedSignerPem(JNIEnv *env, jclass cls,
                                                                  jlong opened) {
    const ls_cert *signer = ls_opened_signer(PTR(const ls_opened, opened));
    if (signer == NULL) {
        return NULL;
    }
    ls_bytes pem = {NULL, 0};
    return take_bytes(env, ls_cert_to_pem(signer, &pem), &pem);
}

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_openedSignerSubject(JNIEnv *env, jclass cls,
                                                                      jlong opened) {
    return cstr_bytes(env, ls_cert_subject(ls_opened_signer(PTR(const ls_opened, opened))));
}

JNIEXPORT jlong JNICALL Java_layersec_Native_openedSigningTime(JNIEnv *env, jclass cls,
                                                               jlong opened) {
    return (jlong)ls_opened_signing_time(PTR(const ls_opened, opened));
}

JNIEXPORT jboolean JNICALL Java_layersec_Native_openedWasEncrypted(JNIEnv *env, jclass cls,
                                                                   jlong opened) {
    return ls_opened_was_encrypted(PTR(const ls_opened, opened)) ? JNI_TRUE : JNI_FALSE;
}

JNIEXPORT jlong JNICALL Java_layersec_Native_openedSize(JNIEnv *env, jclass cls, jlong opened) {
    return (jlong)ls_opened_size(PTR(const ls_opened, opened));
}

JNIEXPORT void JNICALL Java_layersec_Native_openedFree(JNIEnv *env, jclass cls, jlong opened) {
    ls_opened_free(PTR(ls_opened, opened));
}

/* ---- the client of a Messaging Service ------------------------------------------------------ */

JNIEXPORT jlong JNICALL Java_layersec_Native_clientNew(JNIEnv *env, jclass cls, jbyteArray path) {
    args a = ARGS(env);
    const char *p = args_str(&a, path, REQUIRED, "configPath");
    jlong h = 0;
    if (!a.failed) {
        ls_client *out = NULL;
        ls_result rc = ls_client_new_from_config(p, &out);
        h = take_handle(env, rc, out);
    }
    args_free(&a);
    return h;
}

JNIEXPORT void JNICALL Java_layersec_Native_clientFree(JNIEnv *env, jclass cls, jlong client) {
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

/* ls_client_send (path null) or ls_client_send_file (path non-null). */
JNIEXPORT jbyteArray JNICALL Java_layersec_Native_clientSend(JNIEnv *env, jclass cls,
                                                             jlong client, jbyteArray data,
                                                             jbyteArray name, jbyteArray path,
                                                             jbyteArray to, jbyteArray service,
                                                             jbyteArray action,
                                                             jbyteArray conversation, jint flags) {
    args a = ARGS(env);
    size_t len;
    const uint8_t *d = args_bytes(&a, data, OPTIONAL, "data", &len);
    const char *n = args_str(&a, name, OPTIONAL, "name");
    const char *p = args_str(&a, path, OPTIONAL, "path");
    const char *t = args_str(&a, to, REQUIRED, "to");
    ls_send_options opts;
    ls_send_options_init(&opts);
    opts.flags = (uint32_t)flags;
    opts.service = args_str(&a, service, OPTIONAL, "service");
    opts.action = args_str(&a, action, OPTIONAL, "action");
    opts.conversation = args_str(&a, conversation, OPTIONAL, "conversation");
    jbyteArray result = NULL;
    if (!a.failed) {
        ls_bytes mid = {NULL, 0};
        ls_client *c = PTR(ls_client, client);
        ls_result rc = p != NULL ? ls_client_send_file(c, p, t, &opts, &mid)
                                 : ls_client_send(c, len > 0 ? d : NULL, len, n, t, &opts, &mid);
        if (rc != LS_OK) {
            throw_send(env, rc, &mid);
        } else {
            result = new_bytes(env, mid.data, mid.len);
        }
        ls_bytes_free(&mid);
    }
    args_free(&a);
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
    poll_ctx ctx = {env, sink, NULL, 0};
    size_t count = 0;
    ls_result rc = ls_client_poll(PTR(ls_client, client), sink != NULL ? on_received : NULL,
                                  &ctx, &count);
    /* The sink's exception wins over the library's result: it is why the poll stopped. */
    if (ctx.thrown != NULL) {
        (*env)->Throw(env, ctx.thrown);
        (*env)->DeleteGlobalRef(env, ctx.thrown);
    } else if (ctx.lost) {
        throw_class(env, "java/lang/OutOfMemoryError",
                    "layersec: the poll callback failed and its exception could not be kept");
    } else {
        failed(env, rc);
    }
    return (jlong)count;
}

JNIEXPORT jlong JNICALL Java_layersec_Native_clientRunDueJobs(JNIEnv *env, jclass cls,
                                                              jlong client) {
    size_t sent = 0;
    if (failed(env, ls_client_run_due_jobs(PTR(ls_client, client), &sent))) {
        return 0;
    }
    return (jlong)sent;
}

JNIEXPORT jint JNICALL Java_layersec_Native_clientReceiptState(JNIEnv *env, jclass cls,
                                                               jlong client, jbyteArray mid) {
    args a = ARGS(env);
    const char *m = args_str(&a, mid, REQUIRED, "messageId");
    int32_t state = 0;
    if (!a.failed) {
        failed(env, ls_client_receipt_state(PTR(const ls_client, client), m, &state));
    }
    args_free(&a);
    return (jint)state;
}

JNIEXPORT jbyteArray JNICALL Java_layersec_Native_clientReceipts(JNIEnv *env, jclass cls,
                                                                 jlong client,
                                                                 jboolean waiting_only) {
    ls_bytes out = {NULL, 0};
    ls_result rc = ls_client_receipts(PTR(const ls_client, client), waiting_only ? 1 : 0, &out);
    return take_bytes(env, rc, &out);
}
