package layersec;

/** The key algorithm of {@link Identity#generate} ({@code LS_KEY_*}). */
public enum KeyType {
    /** RSA, 2048-bit modulus. */
    RSA_2048(1),
    /** RSA, 3072-bit modulus (the recommended RSA size). */
    RSA_3072(2),
    /** RSA, 4096-bit modulus. */
    RSA_4096(3),
    /** ECDSA/ECDH on NIST P-256 (fast to generate: the choice for tests). */
    EC_P256(4);

    final int value;

    KeyType(int value) {
        this.value = value;
    }
}
