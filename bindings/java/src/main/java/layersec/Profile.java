package layersec;

/** What a partner's software reads ({@code LS_PROFILE_*}); see {@link SealOptions#profile}. */
public enum Profile {
    /**
     * No profile: when sealing, the modern defaults plus the flags; when opening, every legacy
     * algorithm accepted (as before profiles existed).
     */
    NONE(0),
    /**
     * Seal: AES-256-GCM AuthEnvelopedData, RSA-OAEP-SHA-256 or ECDH, SignedData with the content
     * inside. Open: none of the legacy algorithms or forms.
     */
    MODERN(1),
    /**
     * Seal: compressed, multipart/signed, AES-256-CBC EnvelopedData with RSA PKCS#1 v1.5 key
     * transport (RSA keys only). Open: AES-CBC, 3DES, RSA PKCS#1 v1.5 and multipart/signed
     * accepted.
     */
    LEGACY_AS2(2);

    final int value;

    Profile(int value) {
        this.value = value;
    }
}
