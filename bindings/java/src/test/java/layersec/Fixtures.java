package layersec;

import java.nio.charset.StandardCharsets;

/** Two parties with EC P-256 keys (quick to generate), made once per test class. */
final class Fixtures implements AutoCloseable {
    final Identity alice;
    final Identity bob;
    final Certificate aliceCert;
    final Certificate bobCert;

    Fixtures() throws LayerSecException {
        alice = Identity.generate("alice", KeyType.EC_P256);
        bob = Identity.generate("bob", KeyType.EC_P256);
        aliceCert = alice.certificate();
        bobCert = bob.certificate();
    }

    static byte[] doc(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    @Override
    public void close() {
        alice.close();
        bob.close();
        aliceCert.close();
        bobCert.close();
    }
}
